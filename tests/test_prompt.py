"""The prompt builder: layout, budget and folding (pure functions, no database)."""

from __future__ import annotations

import pytest

from characters.memory import consolidation_messages
from characters.prompt import (
    PromptTooLong,
    Turn,
    build_prompt,
    clip,
    context_window,
    message_tokens,
)
from characters.tokens import count_tokens, estimate_tokens, exact

BASE = {
    "description": "A grumpy lighthouse keeper who secretly loves poetry.",
    "character_name": "Keeper",
    "instance_name": "Old-Tom",
    "language": "es",
    "memory": "The user is called Ana and has a cat named Miso.",
    "summary": "",
}


def words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def total_tokens(messages) -> int:
    return sum(message_tokens(m["content"]) for m in messages) + 3


def test_tiktoken_works_offline():
    assert exact(), "cl100k_base should load from the bundled file"
    assert count_tokens("hello world") == 2
    assert estimate_tokens("abcdef") == 2


def test_layout_has_labelled_blocks_and_speech_rules():
    prompt = build_prompt(
        **BASE,
        history=[Turn("user", "Hola"), Turn("assistant", "¿Qué quieres?")],
        user_text="¿Cómo está Miso?",
        context_tokens=4096,
        reply_tokens=200,
    )
    system = prompt.messages[0]
    assert system["role"] == "system"
    text = system["content"]
    assert "Old-Tom" in text and "Keeper" in text
    assert "<personality>\nA grumpy lighthouse keeper" in text
    assert "<memory>\nThe user is called Ana" in text and "</memory>" in text
    assert "Spanish (es)" in text
    assert "No markdown" in text and "emoji" in text and "short spoken sentences" in text
    assert "<conversation_summary>" not in text
    assert [m["role"] for m in prompt.messages] == ["system", "user", "assistant", "user"]
    assert prompt.messages[-1]["content"] == "¿Cómo está Miso?"
    assert prompt.overflow == 0 and prompt.fold == 0
    assert prompt.tokens == total_tokens(prompt.messages)


def test_empty_memory_still_has_its_block_and_summary_is_shown():
    prompt = build_prompt(
        **{**BASE, "memory": "", "summary": "They talked about storms."},
        history=[],
        user_text="Hi",
        context_tokens=4096,
        reply_tokens=200,
    )
    text = prompt.messages[0]["content"]
    assert "<memory>\n(Nothing yet" in text
    assert "<conversation_summary>\nThey talked about storms.\n</conversation_summary>" in text


def test_long_history_keeps_budget_and_reports_overflow_to_fold():
    history = [Turn("user" if i % 2 == 0 else "assistant", words(40, f"t{i}-")) for i in range(60)]
    prompt = build_prompt(
        **BASE, history=history, user_text="And now?", context_tokens=2048, reply_tokens=300
    )
    assert prompt.tokens <= 2048 - 300
    assert total_tokens(prompt.messages) == prompt.tokens
    assert prompt.overflow > 0
    # The newest turns are the ones kept, in order; the oldest are reported for folding.
    kept = prompt.messages[1:-1]
    assert kept[-1]["content"] == history[-1].text
    assert kept[0]["content"] == history[prompt.overflow].text
    assert prompt.fold >= prompt.overflow
    assert BASE["memory"] in prompt.messages[0]["content"]
    assert BASE["description"] in prompt.messages[0]["content"]


def test_after_folding_the_rest_fits_in_half_the_room():
    history = [Turn("user", words(30, f"t{i}-")) for i in range(50)]
    first = build_prompt(
        **BASE, history=history, user_text="x", context_tokens=2048, reply_tokens=300
    )
    rest = history[first.fold :]
    second = build_prompt(
        **{**BASE, "summary": "A short summary."},
        history=rest,
        user_text="x",
        context_tokens=2048,
        reply_tokens=300,
    )
    assert second.overflow == 0 and second.fold == 0


def test_memory_and_description_are_never_dropped_and_too_big_raises():
    huge_memory = words(3000)
    with pytest.raises(PromptTooLong):
        build_prompt(
            **{**BASE, "memory": huge_memory},
            history=[],
            user_text="hi",
            context_tokens=2048,
            reply_tokens=300,
        )


def test_oversized_summary_is_trimmed_from_the_start():
    summary = words(3000, "s")
    prompt = build_prompt(
        **{**BASE, "summary": summary},
        history=[Turn("user", "old")],
        user_text="hi",
        context_tokens=2048,
        reply_tokens=300,
    )
    assert prompt.tokens <= 2048 - 300
    text = prompt.messages[0]["content"]
    assert "s2999" in text and "s0 " not in text
    assert BASE["memory"] in text


def test_context_table_and_override():
    assert context_window("gpt-3.5-turbo") == 16385
    assert context_window("gpt-4o-mini") == 128000
    assert context_window("gpt-4") == 8192
    assert context_window("SmolLM2-135M-Instruct.Q4_1") == 2048
    assert context_window("someone/unknown-model") == 4096
    assert context_window("gpt-4o", override=1000) == 1000


def test_clip_and_memory_bound():
    assert clip("short", 10) == "short"
    clipped = clip("One sentence here. Another sentence that is long.", 30)
    assert clipped == "One sentence here." and len(clipped) <= 30


def test_consolidation_prompt_includes_memory_and_transcript():
    messages = consolidation_messages(
        instance_name="Old-Tom",
        description="A lighthouse keeper.",
        language="en",
        memory="Knows Ana.",
        summary="Earlier they met.",
        turns=[Turn("user", "My dog is Rex.")],
        max_chars=500,
    )
    assert "500 characters" in messages[0]["content"] and '{"edits"' in messages[0]["content"]
    assert "Knows Ana." in messages[1]["content"]
    assert "user: My dog is Rex." in messages[1]["content"]
    assert "Earlier they met." in messages[1]["content"]


def test_a_turn_s_stored_count_is_used_instead_of_its_text():
    """The prompt is rebuilt from the whole history every turn: a message's count stored with
    it (Message.text_tokens) stands in for encoding its text again, scaled like a fresh count."""
    from characters.prompt import turn_tokens
    from characters.tokens import TokenCounter

    text = words(30)
    exact_count, local_model = TokenCounter(), TokenCounter(1.3)
    assert turn_tokens(Turn("user", text), exact_count) == message_tokens(text)
    assert turn_tokens(Turn("user", text, tokens=500), exact_count) == 504
    assert turn_tokens(Turn("user", text, tokens=500), local_model) == 651 + 4
    assert turn_tokens(Turn("user", text), local_model) == local_model(text) + 4
    # A system message, counted again every turn, is kept: the same figure as counting it.
    assert local_model.repeated(text) == local_model(text) == local_model.repeated(text)
    assert exact_count.repeated(text) == count_tokens(text)
    # A plain counting function cannot scale a stored count: the text is counted.
    assert turn_tokens(Turn("user", text, tokens=500), count_tokens) == message_tokens(text)

    history = [Turn("user", "old", tokens=3000), Turn("assistant", "recent", tokens=1)]
    prompt = build_prompt(
        **BASE,
        history=history,
        user_text="Hola",
        context_tokens=4096,
        reply_tokens=1000,
        count=exact_count,
    )
    assert prompt.overflow == 1, "the stored 3,000 tokens did not fit beside the rest"
    assert [m["content"] for m in prompt.messages[1:]] == ["recent", "Hola"]


def test_the_new_message_s_stored_count_is_used_too():
    from characters.tokens import TokenCounter

    common = {**BASE, "history": [], "user_text": "Hola", "count": TokenCounter()}
    small = build_prompt(**common, context_tokens=4096, reply_tokens=1000, user_tokens=1)
    counted = build_prompt(**common, context_tokens=4096, reply_tokens=1000)
    assert small.tokens == counted.tokens - count_tokens("Hola") + 1
    with pytest.raises(PromptTooLong):
        build_prompt(**common, context_tokens=4096, reply_tokens=1000, user_tokens=5000)
