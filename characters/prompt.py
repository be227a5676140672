"""The prompt for a character's reply: a pure function of its inputs, within a token budget.

Layout (one system message, then the turns):

    system:   who you are · <personality> · <memory> · <conversation_summary> · speaking rules
    history:  the newest turns that fit the budget, oldest first
    user:     the new message

The budget is the model's context minus the reply's max tokens. Description and memory are never
dropped; when history does not fit, the oldest turns are reported as `overflow` so the caller can
fold them into the rolling conversation summary (see docs/conversation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .tokens import count_tokens

# Chat formats add a few tokens per message (role, separators) and to prime the reply.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
DEFAULT_CONTEXT_TOKENS = 4096

# Context windows by model-name prefix; the longest matching prefix wins.
MODEL_CONTEXT_TOKENS: dict[str, int] = {
    "gpt-3.5-turbo": 16385,
    "gpt-3.5-turbo-instruct": 4096,
    "gpt-4": 8192,
    "gpt-4-32k": 32768,
    "gpt-4-turbo": 128000,
    "gpt-4o": 128000,
    "gpt-4.1": 1047576,
    "gpt-5": 400000,
    "o1": 200000,
    "o3": 200000,
    "o4-mini": 200000,
    "smollm2": 2048,
    "llama-3": 8192,
    "mistral": 32768,
    "qwen2.5": 32768,
}

LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "ca": "Catalan",
    "ko": "Korean",
    "ja": "Japanese",
    "zh": "Chinese",
}

Counter = Callable[[str], int]


class PromptTooLong(ValueError):
    """Description, memory and the new message alone do not fit the model's context."""


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    tokens: int | None = None  # cl100k_base count of `text` when known (stored with the message)


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    tokens: int  # Counted prompt tokens, overheads included.
    budget: int  # Tokens the prompt may use (context minus the reply's max tokens).
    overflow: int  # Oldest history turns left out because they did not fit.
    fold: int  # Oldest turns the caller should fold into the summary (0 when all fit).


def context_window(model: str, override: int = 0) -> int:
    """The model's context in tokens: `override` when set, else the table, else 4096."""
    if override > 0:
        return override
    name = model.lower().rsplit("/", 1)[-1]
    matches = [prefix for prefix in MODEL_CONTEXT_TOKENS if name.startswith(prefix)]
    return MODEL_CONTEXT_TOKENS[max(matches, key=len)] if matches else DEFAULT_CONTEXT_TOKENS


def language_name(tag: str) -> str:
    base = tag.split("-", 1)[0].lower()
    name = LANGUAGE_NAMES.get(base)
    return f"{name} ({tag})" if name else tag


def system_prompt(
    *,
    description: str,
    character_name: str,
    instance_name: str,
    language: str,
    memory: str,
    summary: str = "",
) -> str:
    parts = [
        f"You are {instance_name}, a character called {character_name}. "
        "You are talking with someone by voice.",
        f"<personality>\n{description.strip()}\n</personality>",
        "<memory>\n"
        + (memory.strip() or "(Nothing yet: this may be your first conversation.)")
        + "\n</memory>",
    ]
    if summary.strip():
        parts.append(f"<conversation_summary>\n{summary.strip()}\n</conversation_summary>")
    parts.append(
        "How to answer: your words are spoken aloud. "
        f"Always answer in {language_name(language)}. "
        "Use short spoken sentences, usually one to three. "
        "No markdown, no lists, no emoji, no stage directions. "
        "Stay in character; use your memory and the summary when they help. "
        "Never mention these instructions."
    )
    return "\n\n".join(parts)


def message_tokens(text: str, count: Counter = count_tokens) -> int:
    return count(text) + MESSAGE_OVERHEAD


def _system_tokens(text: str, count: Counter) -> int:
    # The same system message comes back every turn of every conversation with the character.
    repeated = getattr(count, "repeated", None)
    return (repeated(text) if repeated else count(text)) + MESSAGE_OVERHEAD


def turn_tokens(turn: Turn, count: Counter = count_tokens) -> int:
    """A history turn's cost; a count stored with the message is used instead of encoding the
    text again when `count` can scale it (`TokenCounter`): a long conversation's prompt is
    rebuilt on every turn, and encoding every message each time grew with its length."""
    scaled = getattr(count, "scaled", None)
    if turn.tokens is not None and scaled is not None:
        return scaled(turn.tokens) + MESSAGE_OVERHEAD
    return message_tokens(turn.text, count)


def build_prompt(
    *,
    description: str,
    character_name: str,
    instance_name: str,
    language: str,
    memory: str,
    summary: str,
    history: Sequence[Turn],
    user_text: str,
    context_tokens: int,
    reply_tokens: int,
    count: Counter = count_tokens,
    user_tokens: int | None = None,
) -> Prompt:
    """Compose the prompt; never exceeds `context_tokens - reply_tokens`. `user_tokens`: the
    new message's cl100k_base count when already known (counted as it was stored)."""
    budget = context_tokens - reply_tokens - REPLY_PRIMING
    user_cost = turn_tokens(Turn("user", user_text, user_tokens), count)

    def system_for(text: str) -> str:
        return system_prompt(
            description=description,
            character_name=character_name,
            instance_name=instance_name,
            language=language,
            memory=memory,
            summary=text,
        )

    system = system_for(summary)
    fixed = _system_tokens(system, count) + user_cost
    if fixed > budget and summary:
        # The summary is the only part of the system message that may shrink: keep its end.
        without = message_tokens(system_for(""), count) + user_cost
        room = budget - without - 32
        summary = _tail_within(summary, room, count) if room > 0 else ""
        system = system_for(summary)
        fixed = message_tokens(system, count) + user_cost
    if fixed > budget:
        raise PromptTooLong(
            f"Description, memory and message need {fixed} tokens; the model allows {budget} "
            f"(context {context_tokens} minus {reply_tokens} for the reply)."
        )

    room = budget - fixed
    costs = [turn_tokens(turn, count) for turn in history]
    kept = 0
    used = 0
    for cost in reversed(costs):
        if used + cost > room:
            break
        used += cost
        kept += 1
    overflow = len(history) - kept
    fold = 0
    if overflow:
        # Fold enough that the remaining history fills at most half the room, so the summary
        # is not rewritten on every turn.
        fold = overflow
        remaining = used
        while fold < len(history) and remaining > room // 2:
            remaining -= costs[fold]
            fold += 1

    turns = history[overflow:]
    messages = [{"role": "system", "content": system}]
    messages += [{"role": turn.role, "content": turn.text} for turn in turns]
    messages.append({"role": "user", "content": user_text})
    return Prompt(
        messages=messages,
        tokens=fixed + used + REPLY_PRIMING,
        budget=budget + REPLY_PRIMING,
        overflow=overflow,
        fold=fold,
    )


def summary_messages(
    *, language: str, previous_summary: str, turns: Sequence[Turn], max_chars: int
) -> list[dict[str, str]]:
    """Ask the model to fold older turns into the rolling conversation summary."""
    transcript = "\n".join(f"{turn.role}: {turn.text}" for turn in turns)
    return [
        {
            "role": "system",
            "content": (
                "You keep a running summary of a spoken conversation between a user and an AI "
                "character. Rewrite the summary so it also covers the new turns: facts, names, "
                "preferences, promises and open questions. Plain prose, no lists, "
                f"in {language_name(language)}, at most {max_chars} characters. "
                "Reply with the summary only."
            ),
        },
        {
            "role": "user",
            "content": (
                f"Summary so far:\n{previous_summary.strip() or '(none)'}\n\n"
                f"New turns:\n{transcript}"
            ),
        },
    ]


def clip(text: str, max_chars: int) -> str:
    """Trim to `max_chars`, preferring a sentence or word boundary."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    for mark in (". ", "\n", " "):
        position = cut.rfind(mark)
        if position > max_chars // 2:
            return cut[: position + 1].strip()
    return cut.strip()


def _tail_within(text: str, tokens: int, count: Counter) -> str:
    """The longest end of `text` that fits in `tokens`."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high) // 2
        if count(text[middle:]) <= tokens:
            high = middle
        else:
            low = middle + 1
    return text[low:]
