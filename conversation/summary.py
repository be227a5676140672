"""The reply's prompt plan, and summary folding: the model rewrites a conversation's rolling summary to cover its oldest turns.

It runs after a turn, in the background (never on the reply's critical path): when the history
would no longer fit the next prompt (with room for a new message of the same size as this one),
the oldest turns are folded so the next prompt keeps their facts. If a fold fails or has not
finished yet, the next prompt simply leaves those oldest turns out (build_prompt's overflow) and
the fold is tried again after that turn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from characters.prompt import Turn as PromptTurn
from characters.prompt import (
    build_prompt,
    clip,
    context_window,
    summary_messages,
    turn_tokens,
)
from characters.reply_limits import max_reply_tokens
from characters.tokens import TokenCounter

from .background import keyed_lock
from .engines import ChatMessage, LlmEngine, LlmError
from .models import ConversationState
from .selectors import history_load, instance_load

logger = logging.getLogger(__name__)

SUMMARY_TEMPERATURE = 0.3


def token_counter(engine: LlmEngine) -> TokenCounter:
    """Token counts for the budget; non-OpenAI tokenizers get a 1.3 safety factor."""
    return TokenCounter(1.0 if engine.name == "openai" else 1.3)


@dataclass(frozen=True)
class ReplyPlan:
    """The prompt of one reply and what the engine call needs."""

    messages: list[ChatMessage]
    prompt_tokens: int
    model: str
    max_tokens: int
    temperature: float | None
    context_tokens: int
    needs_fold: bool  # The next turn would overflow: fold after this one.


async def plan_reply(
    engine: LlmEngine, instance: Any, conversation_id: Any, user_message_id: Any, text: str
) -> ReplyPlan:
    """Build the reply's prompt from the stored history (never folding: that runs after the
    turn). `instance` comes with its character loaded. Raises `PromptTooLong`."""
    summary, _, history = await sync_to_async(history_load)(
        conversation_id, exclude_id=user_message_id
    )
    return reply_plan_for(engine, instance, text, summary, history)


def reply_plan_for(
    engine: LlmEngine,
    instance: Any,
    text: str,
    summary: str,
    history: list,
    *,
    text_tokens: int | None = None,
) -> ReplyPlan:
    """The reply's plan from a given summary and history (also used to start a reply early,
    voice/preempt.py, so an early prompt is the very one the turn would build). `text_tokens`:
    the message's count if it was stored with one (then it is not counted again here)."""
    character = instance.character
    model = (character.model_name if engine.name == "openai" else "") or engine.default_model()
    context = context_window(
        model, settings.LLM_CONTEXT_TOKENS or engine.context_tokens(model) or 0
    )
    # Saved limits are checked (characters.reply_limits); this covers a later, smaller model.
    max_tokens = min(character.max_tokens or settings.LLM_MAX_TOKENS, max_reply_tokens(context))
    counter = token_counter(engine)
    prompt = build_prompt(
        description=character.description,
        character_name=character.name,
        instance_name=instance.name,
        language=character.language,
        memory=instance.memory,
        summary=summary,
        history=history,
        user_text=text,
        context_tokens=context,
        reply_tokens=max_tokens,
        count=counter,
        user_tokens=text_tokens,
    )
    # Will the next turn (a message this size, a full reply) still fit? If not, fold after.
    next_cost = turn_tokens(PromptTurn("user", text, text_tokens), counter) + max_tokens
    return ReplyPlan(
        messages=[ChatMessage(m["role"], m["content"]) for m in prompt.messages],
        prompt_tokens=prompt.tokens,
        model=model,
        max_tokens=max_tokens,
        temperature=character.temperature,
        context_tokens=context,
        needs_fold=prompt.overflow > 0 or prompt.tokens + next_cost > prompt.budget,
    )


@dataclass(frozen=True)
class FoldPlan:
    """What the prompt of a turn in this conversation needs: its model and budget."""

    conversation_id: Any
    instance_id: Any
    model: str
    context_tokens: int
    reply_tokens: int
    next_user_text: str  # A stand-in of the expected size for the next message.


async def summary_fold(plan: FoldPlan, engine: LlmEngine, counter) -> bool:
    """Fold the oldest turns if the next prompt would overflow. True when a fold was saved."""
    async with keyed_lock("fold", plan.conversation_id):
        started = time.monotonic()
        instance = await sync_to_async(instance_load)(plan.instance_id)
        summary, folded, history = await sync_to_async(history_load)(plan.conversation_id)
        character = instance.character
        prompt = build_prompt(
            description=character.description,
            character_name=character.name,
            instance_name=instance.name,
            language=character.language,
            memory=instance.memory,
            summary=summary,
            history=history,
            user_text=plan.next_user_text,
            context_tokens=plan.context_tokens,
            reply_tokens=plan.reply_tokens,
            count=counter,
        )
        if not prompt.fold:
            return False
        turns = history[: prompt.fold]
        new_summary = await _fold(engine, plan, character.language, summary, turns, counter)
        if new_summary is None:
            return False
        await sync_to_async(_summary_save)(plan.conversation_id, new_summary, folded, prompt.fold)
        logger.info(
            "Folded %d turns of %s into its summary in %.0f ms.",
            prompt.fold,
            plan.conversation_id,
            (time.monotonic() - started) * 1000,
        )
        return True


async def _fold(
    engine: LlmEngine,
    plan: FoldPlan,
    language: str,
    summary: str,
    turns: list[PromptTurn],
    counter,
) -> str | None:
    """The new summary covering `turns`, in batches that fit the context; None on failure."""
    limit = settings.CONVERSATION_SUMMARY_MAX_CHARS
    reply_tokens = max(64, min(1024, limit // 3))
    room = plan.context_tokens - reply_tokens - counter(summary) - 400
    index = 0
    try:
        while index < len(turns):
            batch: list[PromptTurn] = []
            used = 0
            while index < len(turns):
                cost = turn_tokens(turns[index], counter)  # Stored counts, as the prompt.
                if batch and used + cost > room:
                    break
                batch.append(turns[index])
                used += cost
                index += 1
            messages = summary_messages(
                language=language, previous_summary=summary, turns=batch, max_chars=limit
            )
            llm = engine.stream(
                [ChatMessage(m["role"], m["content"]) for m in messages],
                model=plan.model,
                temperature=SUMMARY_TEMPERATURE,
                max_tokens=reply_tokens,
            )
            summary = clip(await llm.collect(), limit)
    except LlmError as exc:
        logger.warning("Could not fold old turns into the summary: %s", exc.code)
        return None
    return summary


def _summary_save(conversation_id: Any, summary: str, folded: int, turns: int) -> None:
    """Save the summary and advance `folded_messages` past the folded turns (and the empty
    messages between them, which history_load skipped)."""
    from characters.models import Conversation, Message

    with transaction.atomic():
        messages = list(
            Message.objects.filter(conversation_id=conversation_id)
            .exclude(role=Message.Role.SYSTEM)
            .order_by("created_at", "id")
            .values_list("text", flat=True)[folded:]
        )
        covered = 0
        seen = 0
        for text in messages:
            if seen == turns:
                break
            covered += 1
            if text.strip():
                seen += 1
        Conversation.objects.filter(pk=conversation_id).update(summary=summary)
        ConversationState.objects.update_or_create(
            conversation_id=conversation_id, defaults={"folded_messages": folded + covered}
        )
