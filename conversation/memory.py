"""Memory consolidation: after a conversation, the model proposes small edits to the memory.

The edits (characters/memory.py) are checked before anything changes: an answer that is not
well-formed JSON, names a fact that is not in memory, or would exceed MEMORY_MAX_CHARS leaves the
memory as it was and is logged with the reason. Each applied edit is saved through
`characters.services.memory_update(source=CONSOLIDATION)`, so every change keeps a
`MemoryRevision` whose note says which conversation and which edit.

Failures are per conversation: one that keeps failing backs off (MEMORY_RETRY_SECONDS, doubling,
at most a day, recorded in `ConversationState`) and never blocks the others of its instance.
Observers of the instance see `memory.updated` and `memory.consolidation_failed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from characters import services as character_services
from characters.memory import BadEdits, MemoryEdit, apply_edits, consolidation_messages, parse_edits
from characters.models import CharacterInstance, Conversation, MemoryRevision
from characters.prompt import context_window, message_tokens

from .background import keyed_lock
from .engines import ChatMessage, LlmEngine, LlmError, get_engine
from .models import ConversationState
from .observe import Publisher
from .retry import TRANSIENT
from .selectors import (
    consolidation_input,
    conversations_to_consolidate,
    instance_load,
    instances_due,
)
from .summary import token_counter

logger = logging.getLogger(__name__)
T = TypeVar("T")

CONSOLIDATION_TEMPERATURE = 0.2
MAX_BACKOFF_SECONDS = 86400


@dataclass
class ConsolidationResult:
    instance_id: Any
    conversations: int  # consolidated without error
    memory: str
    revision_id: int | None  # the newest revision this run made, if any
    failed: list[dict[str, str]] = field(default_factory=list)  # [{"conversation_id", "error"}]
    deferred: int = 0  # left for a later call: the caller's model budget ran out
    retry_after: float | None = None  # seconds until the budget allows the next, when deferred


def consolidation_status() -> dict[str, Any]:
    """For /readyz: whether consolidation runs automatically, and why not."""
    enabled = settings.MEMORY_CONSOLIDATION
    status: dict[str, Any] = {"consolidation": enabled}
    if not enabled:
        status["reason"] = (
            "off by default with the local engine (too weak to edit memory safely); "
            "set MEMORY_CONSOLIDATION=true to enable"
            if settings.LLM_ENGINE == "local"
            else "MEMORY_CONSOLIDATION=false"
        )
    return status


async def memory_consolidate(
    *,
    instance_id: Any,
    include_open: bool = False,
    engine: LlmEngine | None = None,
    budget: Callable[[], Awaitable[float | None]] | None = None,
) -> ConsolidationResult:
    """Consolidate the instance's conversations not yet in memory, one at a time, each isolated.

    `include_open` (an explicit request) also takes open conversations and those backing off
    (after the others). `budget`, awaited before each model request, returns None to go on or the
    seconds until one is allowed: then the rest are left (`deferred`, `retry_after`).
    """
    engine = engine or get_engine()
    async with keyed_lock("memory", instance_id):
        pending = await sync_to_async(conversations_to_consolidate)(
            instance_id, include_open=include_open
        )
        publisher = Publisher(instance_id)
        result = ConsolidationResult(instance_id, 0, "", None)
        try:
            for index, conversation_id in enumerate(pending):
                wait_s = await budget() if budget is not None else None
                if wait_s is not None:
                    result.deferred, result.retry_after = len(pending) - index, wait_s
                    break
                try:
                    revision_id = await _consolidate_one(
                        engine, instance_id, conversation_id, publisher
                    )
                except Exception as exc:
                    reason = await _record_failure(conversation_id, exc)
                    publisher.put(
                        {
                            "type": "memory.consolidation_failed",
                            "instance_id": str(instance_id),
                            "conversation_id": str(conversation_id),
                            "error": reason,
                        }
                    )
                    result.failed.append({"conversation_id": str(conversation_id), "error": reason})
                    continue
                result.conversations += 1
                result.revision_id = revision_id or result.revision_id
        finally:
            publisher.close()
        result.memory = (await sync_to_async(instance_load)(instance_id)).memory
        return result


async def consolidate_idle(*, end_idle: bool = True, engine: LlmEngine | None = None) -> int:
    """End conversations idle for MEMORY_IDLE_SECONDS (unless `end_idle` is False) and
    consolidate every ended one that is due. Returns the number of instances visited."""
    instance_ids = await sync_to_async(_end_idle_and_list)(end_idle)
    for instance_id in instance_ids:
        await memory_consolidate(instance_id=instance_id, engine=engine)
    return len(instance_ids)


def newest_that_fit(
    turns: list[T], render: Callable[[list[T]], list[dict[str, str]]], budget: int, counter
) -> list[T]:
    """The newest turns whose rendered messages take at most `budget` tokens (`counter` counts
    them), [] when not even the newest fits. A binary search over how many of the oldest are left
    out, so a transcript of n turns is rendered and counted O(log n) times, not n (the rendered
    size only grows with the turns kept). Blocking: run it off the event loop."""

    def fits(dropped: int) -> bool:
        rendered = render(turns[dropped:])
        return sum(message_tokens(m["content"], counter) for m in rendered) <= budget

    low, high = 0, len(turns)  # The answer drops between `low` and `high` of the oldest turns.
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return turns[low:]


async def _consolidate_one(
    engine: LlmEngine, instance_id: Any, conversation_id: Any, publisher: Publisher
) -> int | None:
    started_at = timezone.now()
    instance = await sync_to_async(instance_load)(instance_id)
    summary, turns, remembered = await sync_to_async(consolidation_input)(conversation_id)
    character = instance.character
    limit = settings.MEMORY_MAX_CHARS
    model = (character.model_name if engine.name == "openai" else "") or engine.default_model()
    reply_tokens = 512
    context = context_window(
        model, settings.LLM_CONTEXT_TOKENS or engine.context_tokens(model) or 0
    )
    counter = token_counter(engine)

    def messages_for(kept: list) -> list[dict[str, str]]:
        return consolidation_messages(
            instance_name=instance.name,
            description=character.description,
            language=character.language,
            memory=instance.memory,
            summary=summary,
            turns=kept,
            max_chars=limit,
            remembered=max(0, remembered - (len(turns) - len(kept))),
        )

    # Keep the newest turns that fit; older ones are in the summary or left out of this pass.
    # Counting is CPU work on long transcripts: off the event loop.
    budget = context - reply_tokens - 16
    kept = await asyncio.to_thread(newest_that_fit, list(turns), messages_for, budget, counter)
    llm = engine.stream(
        [ChatMessage(m["role"], m["content"]) for m in messages_for(kept)],
        model=model,
        temperature=CONSOLIDATION_TEMPERATURE,
        max_tokens=reply_tokens,
    )
    edits = parse_edits(await llm.collect())
    revision_id = await sync_to_async(_edits_save)(instance_id, edits, conversation_id, limit)
    await sync_to_async(_mark_consolidated)(conversation_id, started_at)
    if revision_id is not None:
        logger.info(
            "Memory of %s: %d edit(s) from conversation %s.",
            instance.name,
            len(edits),
            conversation_id,
        )
        publisher.put(
            {
                "type": "memory.updated",
                "instance_id": str(instance_id),
                "conversation_id": str(conversation_id),
                "revision_id": revision_id,
                "edits": [edit.as_dict() for edit in edits],
            }
        )
    return revision_id


def _edits_save(
    instance_id: Any, edits: list[MemoryEdit], conversation_id: Any, limit: int
) -> int | None:
    """Apply the edits (all or none) on the current memory, one revision per change."""
    with transaction.atomic():
        instance = CharacterInstance.objects.select_for_update().get(pk=instance_id)
        revision_id = None
        for edit, text in apply_edits(instance.memory, edits, limit):
            character_services.memory_update(
                instance=instance,
                text=text,
                source=MemoryRevision.Source.CONSOLIDATION,
                note=f"Conversation {conversation_id}: {edit.describe()}"[:200],
            )
            revision_id = instance.memory_revisions.values_list("pk", flat=True).first()
        return revision_id


def _mark_consolidated(conversation_id: Any, when: Any) -> None:
    ConversationState.objects.update_or_create(
        conversation_id=conversation_id,
        defaults={
            "consolidated_at": when,
            "consolidation_attempts": 0,
            "consolidation_next_at": None,
            "consolidation_error": "",
        },
    )


async def _record_failure(conversation_id: Any, exc: Exception) -> str:
    """Back this conversation off and log one line (a traceback only for a bug, once)."""
    if isinstance(exc, LlmError):
        reason = exc.describe()
    elif isinstance(exc, BadEdits):
        reason = f"bad_edits: {exc}"
    elif isinstance(exc, TRANSIENT):
        reason = f"database: {type(exc).__name__}"
    else:
        reason = f"internal: {type(exc).__name__}: {exc}"
    try:
        attempts, wait = await sync_to_async(_backoff_save)(conversation_id, reason[:200])
    except Exception:
        attempts, wait = 0, 0
    expected = isinstance(exc, (LlmError, BadEdits, *TRANSIENT))
    logger.warning(
        "Memory consolidation of conversation %s failed (attempt %d; next automatic try in "
        "%d s); memory unchanged: %s",
        conversation_id,
        attempts,
        wait,
        reason,
        exc_info=exc if not expected and attempts <= 1 else None,
    )
    return reason[:200]


def _backoff_save(conversation_id: Any, reason: str) -> tuple[int, int]:
    with transaction.atomic():
        state, _ = ConversationState.objects.select_for_update().get_or_create(
            conversation_id=conversation_id
        )
        state.consolidation_attempts += 1
        wait = min(
            MAX_BACKOFF_SECONDS,
            settings.MEMORY_RETRY_SECONDS * 2 ** (state.consolidation_attempts - 1),
        )
        state.consolidation_next_at = timezone.now() + timedelta(seconds=wait)
        state.consolidation_error = reason
        state.save(
            update_fields=[
                "consolidation_attempts",
                "consolidation_next_at",
                "consolidation_error",
            ]
        )
        return state.consolidation_attempts, int(wait)


def _end_idle_and_list(end_idle: bool) -> list[Any]:
    if end_idle:
        cutoff = timezone.now() - timedelta(seconds=settings.MEMORY_IDLE_SECONDS)
        Conversation.objects.filter(ended_at__isnull=True, last_activity_at__lt=cutoff).update(
            ended_at=F("last_activity_at")
        )
    return instances_due()
