"""The turn API the voice loop drives: persistence rules, cancel, folding, consolidation."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.utils import timezone

from characters.models import Conversation, MemoryRevision, Message
from conversation import services
from conversation.engines import LlmTimeoutError
from conversation.models import ConversationState
from tests.fake_openai import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner(make_user):
    return make_user("alice")


@pytest.fixture
def instance(owner, make_instance):
    return make_instance(owner, name="Luna", memory="Ana likes tea.")


async def stored(conversation_id) -> list[Message]:
    return await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")
    )


async def test_user_message_is_stored_before_the_engine_is_called(fake_openai, owner, instance):
    turn = await services.reply_start(instance=instance, user=owner, text="Hello", channel="ws")
    assert fake_openai.chat_requests == []
    rows = await stored(turn.conversation.pk)
    assert [(m.role, m.text) for m in rows] == [("user", "Hello")]
    assert turn.user_message.pk == rows[0].pk
    assert turn.conversation.channel == "ws"
    deltas = [d async for d in turn.stream()]
    message = await turn.finish()
    assert "".join(deltas) == message.text == "Hello from the fake model."
    assert message.timings["first_token_ms"] is not None


async def test_spoken_text_overrides_and_finish_updates(fake_openai, owner, instance):
    fake_openai.script("One. Two. Three.")
    turn = await services.reply_start(instance=instance, user=owner, text="Count")
    async for _ in turn.stream():
        pass
    first = await turn.finish(spoken_text="One.", interrupted=True)
    again = await turn.finish(spoken_text="One. Two.")
    assert first.pk == again.pk
    rows = await stored(turn.conversation.pk)
    assert len(rows) == 2
    assert rows[1].text == "One. Two." and rows[1].interrupted is True


async def test_cancel_during_streaming_stores_partial_reply(fake_openai, owner, instance):
    fake_openai.script(Reply("a b c d e f g h i j", token_delay=0.1))
    turn = await services.reply_start(instance=instance, user=owner, text="Go")
    got: list[str] = []
    three = asyncio.Event()

    async def consume():
        async for delta in turn.stream():
            got.append(delta)
            if len(got) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await stored(turn.conversation.pk)
    assert rows[-1].role == "assistant"
    assert rows[-1].interrupted is True
    assert rows[-1].text == "".join(got)
    assert rows[-1].completion_tokens == len(got)


async def test_timeout_stores_the_error(fake_openai, owner, instance, settings):
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.2
    fake_openai.script(Reply("late", first_token_delay=1.0))
    turn = await services.reply_start(instance=instance, user=owner, text="Hi")
    with pytest.raises(LlmTimeoutError):
        async for _ in turn.stream():
            pass
    rows = await stored(turn.conversation.pk)
    assert rows[-1].error.startswith("llm_timeout: ")
    assert rows[-1].text == ""


async def test_text_limits(fake_openai, owner, instance, settings):
    settings.CHAT_MAX_CHARS = 10
    with pytest.raises(ValidationError):
        await services.reply_start(instance=instance, user=owner, text="x" * 11)
    assert await sync_to_async(Message.objects.count)() == 0


async def test_long_history_is_folded_into_the_summary(fake_openai, owner, instance, settings):
    settings.LLM_CONTEXT_TOKENS = 900
    settings.LLM_MAX_TOKENS = 100
    conversation_id = None
    for index in range(12):
        fake_openai.script(f"Reply {index}: " + "blah " * 30)
        turn = await services.reply_start(
            instance=instance,
            user=owner,
            text=f"Question {index}: " + "words " * 30,
            conversation_id=conversation_id,
        )
        conversation_id = turn.conversation.pk
        async for _ in turn.stream():
            pass
        await turn.finish()
        assert turn.prompt_tokens <= 900 - 100
    fold_requests = [r for r in fake_openai.chat_requests if "running summary" in r.system]
    assert fold_requests, "older turns should have been folded by the model"
    conversation = await sync_to_async(Conversation.objects.get)(pk=conversation_id)
    state = await sync_to_async(ConversationState.objects.get)(conversation=conversation)
    assert conversation.summary
    assert state.folded_messages > 0
    # The last reply's prompt carries the summary, the memory, and only unfolded turns.
    last = [r for r in fake_openai.chat_requests if "running summary" not in r.system][-1]
    assert "<conversation_summary>" in last.system and "Ana likes tea." in last.system
    assert "Question 0:" not in str(last.messages)
    # Every message is still in the database.
    assert len(await stored(conversation_id)) == 24


async def test_consolidation_writes_a_revision_within_the_bound(
    fake_openai, owner, instance, settings
):
    settings.MEMORY_MAX_CHARS = 60
    turn = await services.reply_start(instance=instance, user=owner, text="I moved to Lima.")
    async for _ in turn.stream():
        pass
    await turn.finish()
    await services.conversation_end(conversation=turn.conversation)
    await services.wait_background()
    fake_openai.script("Ana likes tea. Ana moved to Lima last month and loves the ocean there.")
    # The end already consolidated once (with the default reply); new activity makes it due.
    await sync_to_async(Conversation.objects.filter(pk=turn.conversation.pk).update)(
        last_activity_at=timezone.now()
    )
    result = await services.memory_consolidate(instance_id=instance.pk)
    assert result.conversations == 1
    assert len(result.memory) <= 60
    assert result.memory.startswith("Ana likes tea. Ana moved to Lima")
    revisions = await sync_to_async(list)(
        MemoryRevision.objects.filter(instance=instance).order_by("id")
    )
    assert [r.source for r in revisions] == ["consolidation", "consolidation"]
    assert revisions[0].text == "Ana likes tea."
    # Nothing new to consolidate: no model call, no revision.
    before = len(fake_openai.chat_requests)
    assert (await services.memory_consolidate(instance_id=instance.pk)).conversations == 0
    assert len(fake_openai.chat_requests) == before


async def test_idle_conversations_are_ended_and_consolidated(
    fake_openai, owner, instance, settings
):
    turn = await services.reply_start(instance=instance, user=owner, text="My name is Ana.")
    async for _ in turn.stream():
        pass
    await turn.finish()
    settings.MEMORY_IDLE_SECONDS = 3600
    assert await services.consolidate_idle() == 0
    settings.MEMORY_IDLE_SECONDS = 0
    fake_openai.script("Ana likes tea. Her name is Ana.")
    assert await services.consolidate_idle() == 1
    conversation = await sync_to_async(Conversation.objects.get)(pk=turn.conversation.pk)
    assert conversation.ended_at is not None
    await sync_to_async(instance.refresh_from_db)()
    assert instance.memory == "Ana likes tea. Her name is Ana."


async def test_consolidation_can_be_switched_off(fake_openai, owner, instance, settings):
    settings.MEMORY_CONSOLIDATION = False
    turn = await services.reply_start(instance=instance, user=owner, text="Hi")
    async for _ in turn.stream():
        pass
    await turn.finish()
    before = len(fake_openai.chat_requests)
    await services.conversation_end(conversation=turn.conversation)
    await services.wait_background()
    assert len(fake_openai.chat_requests) == before


async def test_prompt_that_cannot_fit_fails_clearly_and_is_stored(
    fake_openai, owner, make_instance, settings
):
    from conversation.engines import LlmBadRequestError

    settings.LLM_CONTEXT_TOKENS = 400
    settings.LLM_MAX_TOKENS = 100
    big = await sync_to_async(make_instance)(owner, name="Big", memory="remember " * 400)
    turn = await services.reply_start(instance=big, user=owner, text="Hi")
    with pytest.raises(LlmBadRequestError) as caught:
        async for _ in turn.stream():
            pass
    assert caught.value.code == "prompt_too_long"
    assert fake_openai.chat_requests == []
    rows = await stored(turn.conversation.pk)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[1].error.startswith("prompt_too_long: ")


async def test_local_engine_turn_stays_within_its_context(owner, instance, settings):
    import importlib.util

    from conversation.engines.local_engine import default_model_path

    if importlib.util.find_spec("llama_cpp") is None or default_model_path() is None:
        pytest.skip("needs the local engine")
    settings.LLM_ENGINE = "local"
    settings.LOCAL_MAX_TOKENS = 16
    turn = await services.reply_start(instance=instance, user=owner, text="Hello, who are you?")
    assert turn.prompt_tokens <= settings.LOCAL_CONTEXT_TOKENS
    text = "".join([d async for d in turn.stream()])
    message = await turn.finish()
    assert text.strip() and message.text == text
    assert message.model == default_model_path().stem
    assert 1 <= message.completion_tokens <= 16
