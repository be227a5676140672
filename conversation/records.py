"""The turn's rows: opening a conversation, storing the user message (with the history read in
the same call) and the reply, and the conversation's turn lease.

One turn at a time per conversation, across doors and processes: storing the user message takes
the lease (`ConversationState.turn_holder`, in the transaction that locks the conversation's
row), storing the reply lets go of it, and a turn that runs long renews it. A lease held by
another holder and not expired refuses the turn with `TurnInProgress`; a crashed process's lease
expires after CONVERSATION_TURN_LEASE_SECONDS.

Sync ORM, called through `sync_to_async`; the writes go through `with_db_retry`, so a short
database outage is retried and a longer one raises the last `OperationalError`/`InterfaceError`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from characters.models import CharacterInstance, Conversation, Message
from characters.services import conversation_reopen
from characters.tokens import count_to_store

from .errors import ConversationEnded, ConversationNotFound, ReplyOrphaned, TurnInProgress
from .models import ConversationState
from .retry import with_db_retry
from .selectors import conversation_history

logger = logging.getLogger(__name__)


def storable(text: str) -> str:
    """`text` as every database can keep it: no NUL characters, no lone UTF-16 surrogates
    (a model's output may carry either; PostgreSQL refuses both)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def conversation_open(
    instance_id: Any,
    user: AbstractBaseUser,
    conversation_id: Any,
    channel: str,
    *,
    lock: bool,
    continue_ended: bool = False,
) -> Conversation:
    """A new conversation (`conversation_id` falsy) or the user's open one on this instance,
    with its instance and character loaded.
    `continue_ended`: a conversation the idle sweep ended is opened again (a live session that
    was silent for a while goes on where it was) instead of raising `ConversationEnded`."""
    if not conversation_id:
        conversation = Conversation.objects.create(
            instance_id=instance_id, owner=user, channel=channel[:20]
        )
        conversation.instance = CharacterInstance.objects.select_related("character").get(
            pk=instance_id
        )
        return conversation
    # The instance comes in the same query (a turn's prompt needs its current memory); the
    # lock stays on the conversation's row where the database can say so.
    conversations = Conversation.objects.select_related("instance__character")
    if lock:
        of = ("self",) if connection.features.has_select_for_update_of else ()
        conversations = conversations.select_for_update(of=of)
    try:
        conversation = conversations.get(pk=conversation_id, instance_id=instance_id, owner=user)
    except (Conversation.DoesNotExist, ValidationError, ValueError) as exc:
        raise ConversationNotFound("No such conversation for this instance.") from exc
    if conversation.ended_at is not None:
        if not continue_ended:
            raise ConversationEnded("This conversation has ended; start a new one.")
        conversation_reopen(conversation=conversation)
    return conversation


def _lease_end() -> Any:
    return timezone.now() + timedelta(seconds=settings.CONVERSATION_TURN_LEASE_SECONDS)


def turn_in_progress(conversation_id: Any, holder: str = "") -> bool:
    """Whether someone other than `holder` holds a live turn lease on the conversation."""
    return (
        ConversationState.objects.filter(
            conversation_id=conversation_id, turn_expires_at__gt=timezone.now()
        )
        .exclude(turn_holder__in=("", holder))
        .exists()
    )


def _turn_lease_take(conversation_id: Any, holder: str) -> None:
    """Take the turn lease; call inside the transaction that locked the conversation's row.
    Raises `TurnInProgress` when another holder's lease is live."""
    if turn_in_progress(conversation_id, holder):
        raise TurnInProgress(
            "Another turn of this conversation is in progress (another request or socket); "
            "wait for its reply, then send again."
        )
    ConversationState.objects.update_or_create(
        conversation_id=conversation_id,
        defaults={"turn_holder": holder[:64], "turn_expires_at": _lease_end()},
    )


def turn_lease_renew(conversation_id: Any, holder: str) -> bool:
    """Extend `holder`'s lease (a long turn); False when it no longer holds it."""
    return bool(
        ConversationState.objects.filter(
            conversation_id=conversation_id, turn_holder=holder[:64]
        ).update(turn_expires_at=_lease_end())
    )


def _turn_lease_release(conversation_id: Any, holder: str) -> None:
    ConversationState.objects.filter(
        conversation_id=conversation_id, turn_holder=holder[:64]
    ).update(turn_holder="", turn_expires_at=None)


def user_message_store(
    instance_id: Any,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any,
    channel: str,
    *,
    continue_ended: bool = False,
    holder: str = "",
) -> tuple[Conversation, Message]:
    """Store the user's message (in a new conversation when `conversation_id` is None) and take
    the conversation's turn lease for `holder` (raises `TurnInProgress`). The conversation comes
    back as read under the lock (its `summary` current), with its instance and character
    loaded."""
    # Counted before the transaction: the write lock (all of SQLite) is not held meanwhile.
    tokens = count_to_store(text)

    def write() -> tuple[Conversation, Message]:
        with transaction.atomic():
            conversation = conversation_open(
                instance_id,
                user,
                conversation_id,
                channel,
                lock=True,
                continue_ended=continue_ended,
            )
            if holder:
                _turn_lease_take(conversation.pk, holder)
            message = Message.objects.create(
                conversation=conversation, role=Message.Role.USER, text=text, text_tokens=tokens
            )
            Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
        return conversation, message

    return with_db_retry(write, what="the user's message")


def user_message_store_and_history(
    instance_id: Any,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any,
    channel: str,
    *,
    continue_ended: bool,
    holder: str = "",
) -> tuple[Any, Any, tuple[str, list] | None]:
    """Store the user's message, then read the history for the prompt in the same call: one
    thread hop, not two, each queued behind other sockets' database work under load. A failed
    read returns None (the message is stored; the plan reads the history again)."""
    conversation, message = user_message_store(
        instance_id,
        user,
        text,
        conversation_id,
        channel,
        continue_ended=continue_ended,
        holder=holder,
    )
    try:
        summary, _, history = conversation_history(conversation, exclude_id=message.pk)
    except Exception:  # The store succeeded; never report it as failed.
        logger.warning("History not read with the stored message; reading it again.", exc_info=True)
        return conversation, message, None
    return conversation, message, (summary, history)


def reply_store(conversation_id: Any, holder: str = "", **fields: Any) -> Any:
    """Store the assistant's reply (`fields` are `Message` fields) and let go of `holder`'s
    turn lease; returns the reply's id. Raises ReplyOrphaned when the conversation was deleted
    meanwhile (its instance deleted during the reply): the database refused the reply's key."""

    fields.setdefault("text_tokens", count_to_store(fields.get("text", "")))

    def write() -> Any:
        with transaction.atomic():
            message = Message.objects.create(
                conversation_id=conversation_id, role=Message.Role.ASSISTANT, **fields
            )
            Conversation.objects.filter(pk=conversation_id).update(last_activity_at=timezone.now())
            if holder:
                _turn_lease_release(conversation_id, holder)
        return message.pk

    try:
        return with_db_retry(write, what="the reply")
    except IntegrityError:
        if Conversation.objects.filter(pk=conversation_id).exists():
            raise
        raise ReplyOrphaned(
            "The conversation was deleted (or its instance) while the reply was produced; "
            "the reply was not stored."
        ) from None
