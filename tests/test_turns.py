"""The turn (conversation.turns.reply_turn): persistence rules, cancel, errors, folding."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError

from characters.models import Conversation, Message
from conversation.background import wait_background
from conversation.errors import ConversationEnded, ConversationNotFound
from conversation.models import ConversationState
from conversation.turns import conversation_open, reply_turn
from tests.fake_openai import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def instance(user, make_instance):
    return make_instance(user, name="Luna", memory="Ana likes tea.")


async def stored(conversation_id) -> list[Message]:
    return await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")
    )


async def whole_turn(instance, user, text, conversation_id=None, **kwargs):
    async with reply_turn(
        instance=instance, user=user, text=text, conversation_id=conversation_id, **kwargs
    ) as turn:
        async for _ in turn.deltas():
            pass
    return turn


async def test_user_message_is_stored_before_the_engine_is_called(fake_openai, user, instance):
    async with reply_turn(instance=instance, user=user, text=" Hello ", channel="ws") as turn:
        assert fake_openai.chat_requests == []
        rows = await stored(turn.conversation_id)
        assert [(m.role, m.text) for m in rows] == [("user", "Hello")]
        assert turn.user_message_id == rows[0].pk
        deltas = [d async for d in turn.deltas()]
    rows = await stored(turn.conversation_id)
    conversation = await Conversation.objects.aget(pk=turn.conversation_id)
    assert conversation.channel == "ws"
    assert "".join(deltas) == rows[1].text == "Hello from the fake model."
    assert rows[1].pk == turn.reply_message_id and turn.error is None
    assert rows[1].interrupted is False
    assert rows[1].timings["first_token_ms"] is not None
    assert rows[1].timings["prepare_ms"] is not None


async def test_the_history_is_read_with_the_store_and_again_if_that_read_failed(
    fake_openai, user, instance, monkeypatch
):
    """Store and history read share one thread hop; a failing read there never makes a stored
    message look unstored: the plan reads the history again."""
    import conversation.records as records_module

    first = await whole_turn(instance, user, "Hello")
    real, calls = records_module.conversation_history, []

    def flaky(conversation, **kwargs):
        calls.append(conversation.pk)
        if len(calls) == 1:
            raise RuntimeError("read failed")
        return real(conversation, **kwargs)

    monkeypatch.setattr(records_module, "conversation_history", flaky)
    second = await whole_turn(instance, user, "Again", conversation_id=first.conversation_id)
    assert second.error is None and len(calls) == 1, "the plan read it again elsewhere"
    rows = await stored(first.conversation_id)
    assert [m.role for m in rows] == ["user", "assistant"] * 2
    prompt = [m["content"] for m in fake_openai.chat_requests[-1].messages]
    assert "Hello" in prompt and prompt[-1] == "Again"


async def test_heard_text_is_stored_and_marks_a_barge_in(fake_openai, user, instance):
    fake_openai.script("One. Two. Three.", "Four.")
    async with reply_turn(instance=instance, user=user, text="Count") as turn:
        async for _ in turn.deltas():
            pass
        turn.heard("One.")
        turn.add_timings({"first_audio_ms": 812.5})
    rows = await stored(turn.conversation_id)
    assert len(rows) == 2
    assert rows[1].text == "One." and rows[1].interrupted is True
    assert rows[1].timings["first_audio_ms"] == 812.5
    # Heard in full: not interrupted.
    turn = await whole_turn(instance, user, "Again", turn.conversation_id)
    async with reply_turn(
        instance=instance, user=user, text="Once more", conversation_id=turn.conversation_id
    ) as again:
        text = "".join([d async for d in again.deltas()])
        again.heard(text)
    rows = await stored(turn.conversation_id)
    assert rows[-1].interrupted is False and rows[-1].text == text


async def test_cancel_during_streaming_stores_partial_reply_once(fake_openai, user, instance):
    fake_openai.script(Reply("a b c d e f g h i j", token_delay=0.1))
    got: list[str] = []
    three = asyncio.Event()
    turn = reply_turn(instance=instance, user=user, text="Go")

    async def consume():
        async with turn:
            async for delta in turn.deltas():
                got.append(delta)
                if len(got) == 3:
                    three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await stored(turn.conversation_id)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[-1].interrupted is True
    assert rows[-1].text == "".join(got).strip()
    assert rows[-1].completion_tokens == len(got)
    assert turn.reply_message_id == rows[-1].pk


async def test_leaving_early_marks_the_reply_interrupted(fake_openai, user, instance):
    fake_openai.script("a b c d e f")
    async with reply_turn(instance=instance, user=user, text="Go") as turn:
        async for first in turn.deltas():  # noqa: B007
            break
    rows = await stored(turn.conversation_id)
    assert rows[-1].interrupted is True and rows[-1].text == first.strip()


async def test_model_errors_end_deltas_and_are_stored(fake_openai, user, instance, settings):
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.2
    fake_openai.script(Reply("late", first_token_delay=1.0))
    turn = await whole_turn(instance, user, "Hi")
    assert turn.error is not None and turn.error.code == "llm_timeout"
    rows = await stored(turn.conversation_id)
    assert rows[-1].error.startswith("llm_timeout: ")
    assert rows[-1].text == "" and rows[-1].pk == turn.reply_message_id


async def test_an_error_in_the_callers_code_is_stored_and_raised(fake_openai, user, instance):
    turn = reply_turn(instance=instance, user=user, text="Hi")
    with pytest.raises(ZeroDivisionError):
        async with turn:
            async for _ in turn.deltas():
                1 / 0  # noqa: B018
    rows = await stored(turn.conversation_id)
    assert rows[-1].error == "turn_failed: internal: ZeroDivisionError"


async def test_text_limits(fake_openai, user, instance, settings):
    settings.CHAT_MAX_CHARS = 10
    for text in ("x" * 11, "   "):
        with pytest.raises(ValidationError):
            async with reply_turn(instance=instance, user=user, text=text):
                pass
    assert await Message.objects.acount() == 0
    assert fake_openai.chat_requests == []


async def test_conversation_open_checks_owner_instance_and_end(
    fake_openai, user, instance, make_user, make_instance
):
    conversation_id = await conversation_open(instance=instance, user=user, channel="cli")
    assert (await Conversation.objects.aget(pk=conversation_id)).channel == "cli"
    assert (
        await conversation_open(instance=instance, user=user, conversation_id=conversation_id)
        == conversation_id
    )
    mallory = await sync_to_async(make_user)("mallory")
    other = await sync_to_async(make_instance)(user, name="Other")
    for caller, inst, cid in (
        (mallory, instance, conversation_id),
        (user, other, conversation_id),
        (user, instance, "not-a-uuid"),
        (user, instance, "4f1d9a4e-0000-4000-8000-000000000000"),
    ):
        with pytest.raises(ConversationNotFound):
            await conversation_open(instance=inst, user=caller, conversation_id=cid)
        with pytest.raises(ConversationNotFound):
            async with reply_turn(instance=inst, user=caller, text="Hi", conversation_id=cid):
                pass
    await Conversation.objects.filter(pk=conversation_id).aupdate(ended_at="2026-01-01T00:00Z")
    with pytest.raises(ConversationEnded):
        async with reply_turn(
            instance=instance, user=user, text="Hi", conversation_id=conversation_id
        ):
            pass
    assert await Message.objects.acount() == 0


async def test_long_history_is_folded_after_turns_not_before(fake_openai, user, instance, settings):
    settings.LLM_CONTEXT_TOKENS = 900
    settings.LLM_MAX_TOKENS = 100
    conversation_id = None
    for index in range(12):
        fake_openai.script(f"Reply {index}: " + "blah " * 30)
        before = len(fake_openai.chat_requests)
        turn = await whole_turn(
            instance, user, f"Question {index}: " + "words " * 30, conversation_id
        )
        # The turn itself made exactly one model call: folding is not on its path.
        assert len(fake_openai.chat_requests) == before + 1
        assert "running summary" not in fake_openai.chat_requests[-1].system
        conversation_id = turn.conversation_id
        assert turn.prompt_tokens <= 900 - 100
        await wait_background()
    fold_requests = [r for r in fake_openai.chat_requests if "running summary" in r.system]
    assert fold_requests, "older turns should have been folded by the model"
    conversation = await Conversation.objects.aget(pk=conversation_id)
    state = await ConversationState.objects.aget(conversation=conversation)
    assert conversation.summary
    assert state.folded_messages > 0
    # The last reply's prompt carries the summary, the memory, and only unfolded turns.
    last = [r for r in fake_openai.chat_requests if "running summary" not in r.system][-1]
    assert "<conversation_summary>" in last.system and "Ana likes tea." in last.system
    assert "Question 0:" not in str(last.messages)
    # Every message is still in the database.
    assert len(await stored(conversation_id)) == 24


async def test_prompt_that_cannot_fit_fails_clearly_and_is_stored(
    fake_openai, user, make_instance, settings
):
    settings.LLM_CONTEXT_TOKENS = 400
    settings.LLM_MAX_TOKENS = 100
    big = await sync_to_async(make_instance)(user, name="Big", memory="remember " * 400)
    turn = await whole_turn(big, user, "Hi")
    assert turn.error is not None and turn.error.code == "prompt_too_long"
    assert fake_openai.chat_requests == []
    rows = await stored(turn.conversation_id)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[1].error.startswith("prompt_too_long: ")


async def test_local_engine_turn_stays_within_its_context(user, instance, settings):
    import importlib.util

    from conversation.engines.local_engine import default_model_path

    if importlib.util.find_spec("llama_cpp") is None or default_model_path() is None:
        pytest.skip("needs the local engine")
    settings.LLM_ENGINE = "local"
    settings.LOCAL_MAX_TOKENS = 16
    async with reply_turn(instance=instance, user=user, text="Hello, who are you?") as turn:
        assert turn.prompt_tokens <= settings.LOCAL_CONTEXT_TOKENS
        text = "".join([d async for d in turn.deltas()])
    message = await Message.objects.aget(pk=turn.reply_message_id)
    assert text.strip() and message.text == text.strip()
    assert message.model == default_model_path().stem
    assert 1 <= message.completion_tokens <= 16


async def test_messages_keep_their_token_count_and_prompts_use_it(
    fake_openai, user, instance, settings
):
    """Each message is counted once, when stored (in the database thread), and the prompt
    budget reads that count: a count stored larger than its text pushes it out of the prompt;
    a message without one (stored before the column existed) is counted from its text."""
    from characters.tokens import count_tokens

    settings.LLM_CONTEXT_TOKENS = 2048
    settings.LLM_MAX_TOKENS = 256
    first = await whole_turn(instance, user, "Remember the lighthouse")
    rows = await stored(first.conversation_id)
    assert [m.text_tokens for m in rows] == [count_tokens(m.text) for m in rows]
    assert all(m.text_tokens > 0 for m in rows)

    await Message.objects.filter(pk=rows[0].pk).aupdate(text_tokens=5000)
    await Message.objects.filter(pk=rows[1].pk).aupdate(text_tokens=None)
    await whole_turn(instance, user, "And now?", conversation_id=first.conversation_id)
    prompt = [m["content"] for m in fake_openai.chat_requests[-1].messages[1:]]
    assert prompt == [rows[1].text, "And now?"]

    # An edited text is counted again.
    message = await Message.objects.aget(pk=rows[0].pk)
    message.text = "Remember the lighthouse and the old boat by the pier"
    await sync_to_async(message.save)(update_fields=["text"])
    await message.arefresh_from_db()
    assert message.text_tokens == count_tokens(message.text)
