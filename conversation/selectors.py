"""Reads of the conversation engine (sync ORM: call through `sync_to_async`)."""

from __future__ import annotations

from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from characters.models import CharacterInstance, Conversation, Message
from characters.prompt import Turn as PromptTurn

from .models import ConversationState


def instance_load(instance_id: Any) -> CharacterInstance:
    return CharacterInstance.objects.select_related("character").get(pk=instance_id)


def history_load(
    conversation_id: Any, *, exclude_id: Any = None
) -> tuple[str, int, list[PromptTurn]]:
    """The conversation's summary, how many messages it covers, and the turns after those.

    `exclude_id` leaves one message out (the new user message, sent separately). Empty texts
    (a reply cut before its first word) are skipped: they say nothing to the model.
    """
    return conversation_history(Conversation.objects.get(pk=conversation_id), exclude_id=exclude_id)


def conversation_history(
    conversation: Conversation, *, exclude_id: Any = None
) -> tuple[str, int, list[PromptTurn]]:
    """`history_load` for a conversation already read (its `summary` as read then)."""
    state = ConversationState.objects.filter(conversation=conversation).first()
    folded = state.folded_messages if state else 0
    # Four columns, not whole rows: every assistant row carries a `timings` JSON document, and
    # decoding one per message per turn was most of this read late in a long conversation.
    messages = (
        Message.objects.filter(conversation=conversation)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("created_at", "id")
        .values_list("pk", "role", "text", "text_tokens")
    )
    history = [
        PromptTurn(role=role, text=text, tokens=tokens)
        for pk, role, text, tokens in messages[folded:]
        if text.strip() and pk != exclude_id
    ]
    return conversation.summary, folded, history


def conversations_to_consolidate(instance_id: Any, *, include_open: bool, now=None) -> list[Any]:
    """Ids of the instance's conversations with activity not yet in memory, oldest first.

    Conversations backing off after a failed consolidation are left out until their next try,
    unless `include_open` (an explicit request) asks for everything: then they come after the
    others, so one that keeps failing does not spend a budgeted call before those that are due.
    """
    now = now or timezone.now()
    conversations = Conversation.objects.filter(instance_id=instance_id).order_by("started_at")
    if not include_open:
        conversations = conversations.filter(ended_at__isnull=False)
    pending, backing_off = [], []
    for conversation in conversations.select_related("engine_state"):
        state = getattr(conversation, "engine_state", None)
        done = state.consolidated_at if state else None
        if done is not None and done >= conversation.last_activity_at:
            continue
        waiting = bool(state and state.consolidation_next_at and state.consolidation_next_at > now)
        if waiting and not include_open:
            continue
        if conversation.messages.filter(role=Message.Role.USER).exists():
            (backing_off if waiting else pending).append(conversation.pk)
    return pending + backing_off


def instances_due(now=None) -> list[Any]:
    """Instances with an ended conversation due for consolidation (not backing off)."""
    now = now or timezone.now()
    due = (
        Conversation.objects.filter(ended_at__isnull=False, messages__role=Message.Role.USER)
        .filter(
            Q(engine_state__isnull=True)
            | Q(engine_state__consolidated_at__isnull=True)
            | Q(engine_state__consolidated_at__lt=F("last_activity_at"))
        )
        .exclude(engine_state__consolidation_next_at__gt=now)
        .order_by()
        .values_list("instance_id", flat=True)
        .distinct()
    )
    return sorted(set(due), key=str)


def consolidation_input(conversation_id: Any) -> tuple[str, list[PromptTurn], int]:
    """The conversation's summary, its unfolded turns, and how many of the first of those an
    earlier consolidation already saw (a conversation continued after it ended)."""
    summary, _, turns = history_load(conversation_id)
    state = ConversationState.objects.filter(conversation_id=conversation_id).first()
    done = state.consolidated_at if state else None
    if done is None:
        return summary, turns, 0
    # New messages come last in `turns` (ordered by time); count them, not the earlier ones.
    new = (
        Message.objects.filter(conversation_id=conversation_id, created_at__gt=done)
        .exclude(role=Message.Role.SYSTEM)
        .values_list("text", flat=True)
    )
    return summary, turns, max(0, len(turns) - sum(1 for text in new if text.strip()))
