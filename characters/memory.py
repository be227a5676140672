"""Memory consolidation: the model rewrites an instance's memory after a conversation.

Pure helpers (the prompt and the bound); `conversation.services.memory_consolidate` runs them
with an engine and saves through `characters.services.memory_update(source=CONSOLIDATION)`,
so every rewrite leaves a `MemoryRevision`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .prompt import Turn, clip, language_name


def consolidation_messages(
    *,
    instance_name: str,
    description: str,
    language: str,
    memory: str,
    summary: str,
    turns: Sequence[Turn],
    max_chars: int,
) -> list[dict[str, str]]:
    transcript = "\n".join(f"{turn.role}: {turn.text}" for turn in turns)
    earlier = f"Summary of earlier parts:\n{summary.strip()}\n\n" if summary.strip() else ""
    return [
        {
            "role": "system",
            "content": (
                f"You maintain the long-term memory of {instance_name}, an AI character "
                f"({description.strip()[:300]}). Rewrite the memory so that it keeps what it "
                "already holds and adds what the character should remember from the "
                "conversation below: who the user is, names, preferences, facts, promises, "
                "feelings. Drop small talk. Write short plain sentences in "
                f"{language_name(language)}, at most {max_chars} characters. "
                "Reply with the new memory only."
            ),
        },
        {
            "role": "user",
            "content": (
                f"Current memory:\n{memory.strip() or '(empty)'}\n\n"
                f"{earlier}Conversation:\n{transcript}"
            ),
        },
    ]


def bounded_memory(text: str, max_chars: int) -> str:
    """The model's answer, cleaned and cut to the memory limit."""
    text = text.strip().strip("`").strip()
    if text.lower().startswith("memory:"):
        text = text[len("memory:") :].strip()
    return clip(text, max_chars)
