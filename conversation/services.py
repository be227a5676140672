"""Turns, conversation endings and memory consolidation: the writes of the conversation engine.

Rules (docs/conversation.md): the user's message is stored before the engine is called; the
reply is stored when done, or with what was produced and marked (`interrupted`, `error`) when an
error, a cancel or a disconnect cuts it. ORM work runs in threads (`sync_to_async`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from characters import services as character_services
from characters.memory import bounded_memory, consolidation_messages
from characters.models import CharacterInstance, Conversation, MemoryRevision, Message
from characters.prompt import (
    PromptTooLong,
    build_prompt,
    clip,
    context_window,
    message_tokens,
    summary_messages,
)
from characters.prompt import (
    Turn as PromptTurn,
)
from characters.tokens import count_tokens

from .engines import ChatMessage, LlmBadRequestError, LlmEngine, LlmError, LlmStream, get_engine
from .models import ConversationState

logger = logging.getLogger(__name__)

SUMMARY_TEMPERATURE = 0.3


class ConversationEnded(Exception):
    """The conversation was ended; start a new one."""


class LlmPromptTooLong(LlmBadRequestError):
    code = "prompt_too_long"


@dataclass
class Turn:
    """One exchange: the stored user message and the reply being streamed for it."""

    conversation: Conversation
    user_message: Message
    instance: CharacterInstance
    engine: LlmEngine
    model: str
    messages: list[ChatMessage]
    prompt_tokens: int
    temperature: float | None
    max_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    preflight_error: LlmError | None = None
    assistant_message: Message | None = None
    llm: LlmStream | None = None
    error: LlmError | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def stream(self) -> AsyncGenerator[str, None]:
        """Yield the reply's text deltas. A failure or a cancel stores the partial reply."""
        if self.llm is not None:
            raise RuntimeError("A turn streams once.")
        self.llm = self.engine.stream(
            self.messages,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        completed = False
        try:
            if self.preflight_error is not None:
                raise self.preflight_error
            async for delta in self.llm:
                yield delta
            completed = True
        except LlmError as exc:
            self.error = exc
            await asyncio.shield(self.finish(error=exc.describe()))
            raise
        except Exception as exc:
            self.error = LlmError(f"{type(exc).__name__}: {exc}")
            await asyncio.shield(self.finish(error=f"internal: {type(exc).__name__}"))
            raise
        finally:
            if not completed and self.error is None:
                # Cancelled, disconnected or closed early: keep what was produced, marked.
                try:
                    await asyncio.shield(self.llm.aclose())
                except Exception:
                    logger.exception("Closing the reply stream failed.")
                await asyncio.shield(self.finish(interrupted=True))

    @property
    def text(self) -> str:
        return self.llm.text if self.llm else ""

    async def finish(
        self,
        spoken_text: str | None = None,
        interrupted: bool = False,
        error: str | None = None,
        timings: dict[str, Any] | None = None,
    ) -> Message:
        """Store (or update) the assistant message. `spoken_text` overrides the stored text;
        `timings` (e.g. the voice loop's latency figures) are merged into the stored ones."""
        async with self._lock:
            if self.assistant_message is None:
                self.assistant_message = await sync_to_async(_assistant_create)(
                    self, spoken_text, interrupted, error, timings or {}
                )
            else:
                await sync_to_async(_assistant_update)(
                    self.assistant_message, spoken_text, interrupted, error, timings or {}
                )
            return self.assistant_message


async def reply_start(
    *,
    instance: CharacterInstance,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any = None,
    channel: str = "api",
    engine: LlmEngine | None = None,
) -> Turn:
    """Store the user's message, build the prompt (folding old turns if needed), return a Turn."""
    engine = engine or get_engine()
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": ["Say something: the message is empty."]})
    if len(text) > settings.CHAT_MAX_CHARS:
        raise ValidationError(
            {
                "text": [
                    f"The message is {len(text)} characters; the limit is {settings.CHAT_MAX_CHARS}."
                ]
            }
        )
    started = time.monotonic()
    conversation, user_message = await sync_to_async(_user_message_store)(
        instance, user, text, conversation_id, channel
    )
    ensure_idle_sweeper()
    instance = conversation.instance  # Reloaded with its character, off the event loop.
    character = instance.character
    model = (character.model_name if engine.name == "openai" else "") or engine.default_model()
    max_tokens = character.max_tokens or settings.LLM_MAX_TOKENS
    context = context_window(
        model, settings.LLM_CONTEXT_TOKENS or engine.context_tokens(model) or 0
    )
    counter = _counter(engine)
    turn = Turn(
        conversation=conversation,
        user_message=user_message,
        instance=instance,
        engine=engine,
        model=model,
        messages=[],
        prompt_tokens=0,
        temperature=character.temperature,
        max_tokens=max_tokens,
    )
    try:
        prompt = await _prompt_for(turn, context, counter)
    except PromptTooLong as exc:
        turn.preflight_error = LlmPromptTooLong(str(exc))
        return turn
    turn.messages = [ChatMessage(m["role"], m["content"]) for m in prompt.messages]
    turn.prompt_tokens = prompt.tokens
    turn.timings["prepare_ms"] = round((time.monotonic() - started) * 1000, 1)
    return turn


async def reply(
    *,
    instance: CharacterInstance,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any = None,
    channel: str = "api",
) -> Turn:
    """A whole turn without streaming; LlmError propagates after the reply is stored."""
    turn = await reply_start(
        instance=instance, user=user, text=text, conversation_id=conversation_id, channel=channel
    )
    async for _ in turn.stream():
        pass
    await turn.finish()
    return turn


async def conversation_end(*, conversation: Conversation) -> Conversation:
    """End a conversation and consolidate it into memory in the background."""
    conversation = await sync_to_async(_conversation_end)(conversation.pk)
    if settings.MEMORY_CONSOLIDATION:
        run_in_background(memory_consolidate(instance_id=conversation.instance_id))
    return conversation


@dataclass
class ConsolidationResult:
    instance_id: Any
    conversations: int
    memory: str
    revision_id: int | None


async def memory_consolidate(
    *,
    instance_id: Any,
    include_open: bool = False,
    engine: LlmEngine | None = None,
) -> ConsolidationResult:
    """Rewrite the instance's memory from its conversations not yet consolidated."""
    engine = engine or get_engine()
    async with _instance_lock(instance_id):
        pending = await sync_to_async(_pending_conversations)(instance_id, include_open)
        revision_id = None
        instance = await sync_to_async(_instance_load)(instance_id)
        for conversation_id in pending:
            instance, revision_id = await _consolidate_one(engine, instance_id, conversation_id)
        return ConsolidationResult(instance_id, len(pending), instance.memory, revision_id)


async def consolidate_idle(*, end_idle: bool = True, engine: LlmEngine | None = None) -> int:
    """End conversations idle for MEMORY_IDLE_SECONDS (unless `end_idle` is False) and
    consolidate every ended one not yet consolidated. Returns the number of instances."""
    instance_ids = await sync_to_async(_end_idle_conversations)(end_idle)
    for instance_id in instance_ids:
        try:
            await memory_consolidate(instance_id=instance_id, engine=engine)
        except LlmError as exc:
            logger.warning("Memory consolidation of %s failed: %s", instance_id, exc.code)
    return len(instance_ids)


# Background work ---------------------------------------------------------------------------

_background: set[asyncio.Task] = set()
_sweepers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_instance_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def run_in_background(coro: Coroutine) -> None:
    """Run `coro` without blocking the caller: a task on the running loop, else a thread."""

    async def guarded() -> None:
        try:
            await coro
        except Exception:
            logger.exception("Background conversation work failed.")
        finally:
            # The task's ORM calls ran in a thread no request cleans up after: close its connection.
            await sync_to_async(close_old_connections)()

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        threading.Thread(target=asyncio.run, args=(guarded(),), daemon=True).start()
        return
    # A fresh context: the task must not inherit a request's ThreadSensitiveContext, whose
    # executor stops when the request ends.
    task = loop.create_task(guarded(), context=contextvars.Context())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def wait_background() -> None:
    """Wait for scheduled background work (consolidations); for tests and shutdown."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def ensure_idle_sweeper() -> None:
    """Start (once per event loop) the periodic sweep that consolidates idle conversations."""
    if not settings.MEMORY_CONSOLIDATION or settings.MEMORY_SWEEP_SECONDS <= 0:
        return
    loop = asyncio.get_running_loop()
    if loop in _sweepers:
        return

    async def sweep() -> None:
        while True:
            await asyncio.sleep(settings.MEMORY_SWEEP_SECONDS)
            try:
                await consolidate_idle()
            except Exception:
                logger.exception("Idle memory sweep failed.")

    _sweepers[loop] = loop.create_task(sweep(), context=contextvars.Context())


def _instance_lock(instance_id: Any) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    locks = _instance_locks.setdefault(loop, {})
    return locks.setdefault(str(instance_id), asyncio.Lock())


# Prompt and folding ------------------------------------------------------------------------


def _counter(engine: LlmEngine):
    """Token counts for the budget; non-OpenAI tokenizers get a safety factor."""
    factor = 1.0 if engine.name == "openai" else 1.3
    if factor == 1.0:
        return count_tokens
    return lambda text: int(count_tokens(text) * factor) + 1


async def _prompt_for(turn: Turn, context: int, counter) -> Any:
    instance = turn.instance
    character = instance.character
    for _ in range(2):
        summary, folded, history = await sync_to_async(_history_load)(
            turn.conversation.pk, turn.user_message.pk
        )
        prompt = build_prompt(
            description=character.description,
            character_name=character.name,
            instance_name=instance.name,
            language=character.language,
            memory=instance.memory,
            summary=summary,
            history=history,
            user_text=turn.user_message.text,
            context_tokens=context,
            reply_tokens=turn.max_tokens,
            count=counter,
        )
        if not prompt.fold:
            return prompt
        started = time.monotonic()
        done = await _fold(turn, summary, folded, history[: prompt.fold], context, counter)
        turn.timings["summary_ms"] = round((time.monotonic() - started) * 1000, 1)
        if not done:
            return prompt  # The overflow is left out of this prompt; folding retries next turn.
    return prompt


async def _fold(
    turn: Turn,
    summary: str,
    folded: int,
    turns: list[PromptTurn],
    context: int,
    counter,
) -> bool:
    """Fold `turns` (the oldest unfolded ones) into the conversation summary with the model."""
    limit = settings.CONVERSATION_SUMMARY_MAX_CHARS
    reply_tokens = max(64, min(1024, limit // 3))
    room = context - reply_tokens - counter(summary) - 400
    language = turn.instance.character.language
    index = 0
    try:
        while index < len(turns):
            batch: list[PromptTurn] = []
            used = 0
            while index < len(turns):
                cost = message_tokens(turns[index].text, counter)
                if batch and used + cost > room:
                    break
                batch.append(turns[index])
                used += cost
                index += 1
            messages = summary_messages(
                language=language, previous_summary=summary, turns=batch, max_chars=limit
            )
            llm = turn.engine.stream(
                [ChatMessage(m["role"], m["content"]) for m in messages],
                model=turn.model,
                temperature=SUMMARY_TEMPERATURE,
                max_tokens=reply_tokens,
            )
            summary = clip(await llm.collect(), limit)
    except LlmError as exc:
        logger.warning("Could not fold old turns into the summary: %s", exc.code)
        return False
    await sync_to_async(_summary_save)(turn.conversation.pk, summary, folded + len(turns))
    turn.conversation.summary = summary
    return True


# ORM (runs in threads) -----------------------------------------------------------------------


def _user_message_store(
    instance: CharacterInstance,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any,
    channel: str,
) -> tuple[Conversation, Message]:
    # Touch the related rows the prompt needs while we are off the event loop.
    instance = CharacterInstance.objects.select_related("character").get(pk=instance.pk)
    with transaction.atomic():
        if conversation_id:
            conversation = Conversation.objects.select_for_update().get(
                pk=conversation_id, instance=instance, owner=user
            )
            if conversation.ended_at is not None:
                raise ConversationEnded("This conversation has ended; start a new one.")
        else:
            conversation = Conversation.objects.create(
                instance=instance, owner=user, channel=channel[:20]
            )
        message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, text=text
        )
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
    conversation.instance = instance
    return conversation, message


def _history_load(conversation_id: Any, user_message_id: Any) -> tuple[str, int, list[PromptTurn]]:
    conversation = Conversation.objects.get(pk=conversation_id)
    state, _ = ConversationState.objects.get_or_create(conversation=conversation)
    messages = (
        Message.objects.filter(conversation=conversation)
        .exclude(pk=user_message_id)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("created_at", "id")
    )
    history = [
        PromptTurn(role=m.role, text=m.text)
        for m in messages[state.folded_messages :]
        if m.text.strip()
    ]
    return conversation.summary, state.folded_messages, history


def _summary_save(conversation_id: Any, summary: str, folded: int) -> None:
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation_id).update(summary=summary)
        ConversationState.objects.update_or_create(
            conversation_id=conversation_id, defaults={"folded_messages": folded}
        )


def _assistant_create(
    turn: Turn,
    spoken_text: str | None,
    interrupted: bool,
    error: str | None,
    extra_timings: dict[str, Any],
) -> Message:
    llm = turn.llm
    result = llm.result if llm else None
    produced = llm.text if llm else ""
    text = produced if spoken_text is None else spoken_text
    completion_tokens = (
        result.completion_tokens
        if result and result.completion_tokens is not None
        else count_tokens(produced)
    )
    timings = dict(turn.timings)
    if llm is not None:
        timings["first_token_ms"] = llm.first_token_ms
        timings["total_ms"] = result.total_ms if result else llm.elapsed_ms()
    if result is not None:
        timings["finish_reason"] = result.finish_reason
    timings.update(extra_timings)
    message = Message.objects.create(
        conversation_id=turn.conversation.pk,
        role=Message.Role.ASSISTANT,
        text=text,
        interrupted=interrupted,
        error=(error or "")[:200],
        model=((result.model if result else None) or turn.model)[:200],
        prompt_tokens=(result.prompt_tokens if result and result.prompt_tokens else None)
        or turn.prompt_tokens
        or None,
        completion_tokens=completion_tokens,
        timings=timings,
    )
    Conversation.objects.filter(pk=turn.conversation.pk).update(last_activity_at=timezone.now())
    return message


def _assistant_update(
    message: Message,
    spoken_text: str | None,
    interrupted: bool,
    error: str | None,
    extra_timings: dict[str, Any],
) -> None:
    if spoken_text is not None:
        message.text = spoken_text
    message.interrupted = message.interrupted or interrupted
    message.error = (error or message.error)[:200]
    message.timings = {**message.timings, **extra_timings}
    message.save(update_fields=["text", "interrupted", "error", "timings"])


def _conversation_end(conversation_id: Any) -> Conversation:
    now = timezone.now()
    Conversation.objects.filter(pk=conversation_id, ended_at__isnull=True).update(ended_at=now)
    return Conversation.objects.get(pk=conversation_id)


def _instance_load(instance_id: Any) -> CharacterInstance:
    return CharacterInstance.objects.select_related("character").get(pk=instance_id)


def _pending_conversations(instance_id: Any, include_open: bool) -> list[Any]:
    conversations = Conversation.objects.filter(instance_id=instance_id).order_by("started_at")
    if not include_open:
        conversations = conversations.filter(ended_at__isnull=False)
    pending = []
    for conversation in conversations.select_related("engine_state"):
        state = getattr(conversation, "engine_state", None)
        done = state.consolidated_at if state else None
        if done is not None and done >= conversation.last_activity_at:
            continue
        if conversation.messages.filter(role=Message.Role.USER).exists():
            pending.append(conversation.pk)
    return pending


def _consolidation_input(conversation_id: Any) -> tuple[str, list[PromptTurn]]:
    conversation = Conversation.objects.get(pk=conversation_id)
    state, _ = ConversationState.objects.get_or_create(conversation=conversation)
    messages = conversation.messages.exclude(role=Message.Role.SYSTEM).order_by("created_at", "id")
    turns = [
        PromptTurn(role=m.role, text=m.text)
        for m in messages[state.folded_messages :]
        if m.text.strip()
    ]
    return conversation.summary, turns


async def _consolidate_one(
    engine: LlmEngine, instance_id: Any, conversation_id: Any
) -> tuple[CharacterInstance, int | None]:
    started_at = timezone.now()
    instance = await sync_to_async(_instance_load)(instance_id)
    summary, turns = await sync_to_async(_consolidation_input)(conversation_id)
    character = instance.character
    limit = settings.MEMORY_MAX_CHARS
    model = (character.model_name if engine.name == "openai" else "") or engine.default_model()
    reply_tokens = max(128, min(2048, limit // 3))
    context = context_window(
        model, settings.LLM_CONTEXT_TOKENS or engine.context_tokens(model) or 0
    )
    counter = _counter(engine)

    def messages_for(kept: list[PromptTurn]) -> list[dict[str, str]]:
        return consolidation_messages(
            instance_name=instance.name,
            description=character.description,
            language=character.language,
            memory=instance.memory,
            summary=summary,
            turns=kept,
            max_chars=limit,
        )

    # Keep the newest turns that fit; older ones are in the summary or dropped from this pass.
    kept = list(turns)
    while kept and sum(message_tokens(m["content"], counter) for m in messages_for(kept)) > (
        context - reply_tokens - 16
    ):
        kept.pop(0)
    llm = engine.stream(
        [ChatMessage(m["role"], m["content"]) for m in messages_for(kept)],
        model=model,
        temperature=SUMMARY_TEMPERATURE,
        max_tokens=reply_tokens,
    )
    memory = bounded_memory(await llm.collect(), limit)
    revision_id = None
    if memory:
        revision_id = await sync_to_async(_memory_save)(instance_id, memory, conversation_id)
    await sync_to_async(_mark_consolidated)(conversation_id, started_at)
    instance = await sync_to_async(_instance_load)(instance_id)
    return instance, revision_id


def _memory_save(instance_id: Any, memory: str, conversation_id: Any) -> int | None:
    instance = CharacterInstance.objects.get(pk=instance_id)
    if memory == instance.memory:
        return None
    character_services.memory_update(
        instance=instance,
        text=memory,
        source=MemoryRevision.Source.CONSOLIDATION,
        note=f"Consolidated conversation {conversation_id}",
    )
    return instance.memory_revisions.values_list("pk", flat=True).first()


def _mark_consolidated(conversation_id: Any, when: Any) -> None:
    ConversationState.objects.update_or_create(
        conversation_id=conversation_id, defaults={"consolidated_at": when}
    )


def _end_idle_conversations(end_idle: bool) -> list[Any]:
    if end_idle:
        cutoff = timezone.now() - timedelta(seconds=settings.MEMORY_IDLE_SECONDS)
        Conversation.objects.filter(ended_at__isnull=True, last_activity_at__lt=cutoff).update(
            ended_at=F("last_activity_at")
        )
    due = (
        Conversation.objects.filter(ended_at__isnull=False, messages__role=Message.Role.USER)
        .filter(
            Q(engine_state__isnull=True)
            | Q(engine_state__consolidated_at__isnull=True)
            | Q(engine_state__consolidated_at__lt=F("last_activity_at"))
        )
        .order_by()
        .values_list("instance_id", flat=True)
        .distinct()
    )
    return sorted(set(due), key=str)
