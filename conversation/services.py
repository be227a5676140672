"""Conversation writes outside a turn: ending a conversation (which schedules consolidation).

Turns are in `conversation.turns`, summary folding in `conversation.summary`, consolidation in
`conversation.memory`, background work in `conversation.background`, reads in
`conversation.selectors`.

`reply_start` below is the voice loop's old entry, kept (as a thin adapter over `reply_turn`)
only until the voice pipeline uses `reply_turn` itself; then it goes.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from characters.models import CharacterInstance, Conversation

from .background import run_in_background
from .errors import ConversationEnded, LlmPromptTooLong
from .turns import ReplyTurn, reply_turn

__all__ = ["ConversationEnded", "LlmPromptTooLong", "conversation_end", "reply_start"]


async def conversation_end(*, conversation: Conversation, consolidate: bool = True) -> Conversation:
    """End a conversation; consolidate it into memory in the background when MEMORY_CONSOLIDATION
    is on (and `consolidate`)."""
    conversation = await sync_to_async(_conversation_end)(conversation.pk)
    if consolidate and settings.MEMORY_CONSOLIDATION:
        from .memory import memory_consolidate

        run_in_background(
            memory_consolidate(instance_id=conversation.instance_id), what="memory consolidation"
        )
    return conversation


def _conversation_end(conversation_id: Any) -> Conversation:
    Conversation.objects.filter(pk=conversation_id, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )
    return Conversation.objects.get(pk=conversation_id)


class _Ref:
    """`.pk`/`.id` of a stored row, for the old callers."""

    def __init__(self, pk: Any) -> None:
        self.pk = self.id = pk


class LegacyTurn:
    """The old `Turn` shape (`stream()`, `finish()`) over a `ReplyTurn`, for the voice loop."""

    def __init__(self, turn: ReplyTurn) -> None:
        self._turn = turn
        self.conversation = _Ref(turn.conversation_id)
        self.user_message = _Ref(turn.user_message_id)

    async def stream(self):
        """Text deltas; a model failure is raised after the last delta."""
        async for delta in self._turn.deltas():
            yield delta
        if self._turn.error is not None:
            raise self._turn.error

    async def finish(
        self,
        spoken_text: str | None = None,
        interrupted: bool = False,
        error: str | None = None,
        timings: dict[str, Any] | None = None,
    ) -> _Ref | None:
        """Store the reply (once); returns it, or None if it could not be stored."""
        if spoken_text is not None:
            self._turn.heard(spoken_text)
        self._turn.add_timings(timings or {})
        await self._turn._exit(cancelled=interrupted)
        pk = self._turn.reply_message_id
        return _Ref(pk) if pk is not None else None


async def reply_start(
    *,
    instance: CharacterInstance,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any = None,
    channel: str = "api",
) -> LegacyTurn:
    """Deprecated: use `conversation.turns.reply_turn`. Stores the user message, returns a turn."""
    turn = reply_turn(
        instance=instance,
        user=user,
        text=text,
        conversation_id=conversation_id,
        channel=channel,
        observe=False,  # The voice loop publishes its own observer events.
    )
    await turn.__aenter__()
    return LegacyTurn(turn)
