"""One turn at a time per conversation, whatever the door (issue 21, item 8).

The issue's example: five parallel chats into one conversation stored five questions, then five
answers, and the next prompt paired them wrongly. Now every stored user message is followed by
its own answer, and a turn that finds another in progress is refused with 409
`turn_in_progress` (REST, SSE) or the `turn_in_progress` error (a second voice socket). Runs on
SQLite and, with DATABASE_URL, PostgreSQL (`-m "django_db or postgres"`).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from characters.models import Message
from conversation.models import ConversationState
from tests.fake_openai import Reply
from tests.voice_helpers import connect, events_until, send, start_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _quiet(settings):
    settings.TTS_ENGINES = ["espeak"]
    settings.MEMORY_CONSOLIDATION = False
    settings.WS_TURNS_PER_MINUTE = 1000


def chat(token: str, instance, text: str, conversation=None, **headers):
    body = {"text": text, **({"conversation": str(conversation)} if conversation else {})}
    return AsyncClient().post(
        f"/api/instances/{instance.id}/chat",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )


async def stored(conversation_id) -> list[tuple[str, str]]:
    rows = await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("created_at", "id")
        .values_list("role", "text")
    )
    return list(rows)


def assert_paired(rows: list[tuple[str, str]], answers: dict[str, str]) -> None:
    """User, assistant, user, assistant…, each answer the one given to its question."""
    assert [role for role, _ in rows] == ["user", "assistant"] * (len(rows) // 2), rows
    for (_, question), (_, answer) in zip(rows[::2], rows[1::2], strict=True):
        assert answers[question] == answer, rows


async def test_five_parallel_chats_each_question_is_followed_by_its_answer(
    fake_openai, token, nova
):
    fake_openai.script("First answer.")
    first = await chat(token, nova, "Q0")
    conversation = first.json()["conversation_id"]
    fake_openai.default_reply = Reply("Answer.", first_token_delay=0.4)
    answers = await asyncio.gather(*(chat(token, nova, f"Q{n}", conversation) for n in range(1, 6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}, statuses
    for answer in answers:
        if answer.status_code == 409:
            body = answer.json()
            assert body["code"] == "turn_in_progress" and "in progress" in body["detail"]
    asked = {"Q0": "First answer."} | {
        f"Q{n}": "Answer." for n, a in enumerate(answers, 1) if a.status_code == 200
    }
    rows = await stored(conversation)
    assert_paired(rows, asked)
    assert len(rows) == 2 * len(asked)
    # The next prompt pairs them rightly, and the lease is free again.
    fake_openai.default_reply = Reply("Next.")
    again = await chat(token, nova, "And now?", conversation)
    assert again.status_code == 200
    prompt = fake_openai.chat_requests[-1].messages
    pairs = [(m["role"], m["content"]) for m in prompt if m["role"] != "system"]
    assert pairs[:-1] == [("user" if r == "user" else "assistant", t) for r, t in rows]


async def test_event_stream_is_refused_with_409_while_a_chat_runs(fake_openai, token, nova):
    fake_openai.script("First.")
    conversation = (await chat(token, nova, "Hi")).json()["conversation_id"]
    fake_openai.script(Reply("Slow answer.", first_token_delay=1.0))
    running = asyncio.ensure_future(chat(token, nova, "Slow one", conversation))
    await asyncio.sleep(0.5)
    stream = await chat(token, nova, "Me too", conversation, Accept="text/event-stream")
    assert stream.status_code == 409
    assert stream.json()["code"] == "turn_in_progress"
    assert (await running).status_code == 200
    assert_paired(await stored(conversation), {"Hi": "First.", "Slow one": "Slow answer."})


async def test_a_second_voice_socket_is_refused_while_the_first_replies(fake_openai, token, nova):
    fake_openai.script("First.")
    conversation = (await chat(token, nova, "Hi")).json()["conversation_id"]
    fake_openai.script(Reply("A slow spoken reply.", first_token_delay=1.0), "Now yours.")
    first, second = await connect(token), await connect(token)
    for ws in (first, second):
        await start_session(ws, "nova", conversation=conversation, output_audio={"format": "none"})
    await send(first, {"type": "input_text", "text": "Tell me slowly."})
    await events_until(first, "transcript.final")
    await send(second, {"type": "input_text", "text": "Interrupting from elsewhere."})
    refused = await events_until(second, "response.done")
    errors = [e for e in refused if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["turn_in_progress"] and not errors[0]["fatal"]
    done = (await events_until(first, "response.done"))[-1]
    assert done["text"] == "A slow spoken reply." and not done["interrupted"]
    # Once the first socket's turn is over, the second one's next turn is taken.
    await send(second, {"type": "input_text", "text": "My turn now?"})
    assert (await events_until(second, "response.done"))[-1]["text"] == "Now yours."
    assert_paired(
        await stored(conversation),
        {"Hi": "First.", "Tell me slowly.": "A slow spoken reply.", "My turn now?": "Now yours."},
    )
    for ws in (first, second):
        await ws.disconnect()


async def test_a_session_barging_in_on_its_own_reply_is_not_refused(fake_openai, token, nova):
    fake_openai.script(Reply("A long answer " * 20, token_delay=0.05), "Short.")
    ws = await connect(token)
    await start_session(ws, "nova", output_audio={"format": "none"})
    await send(ws, {"type": "input_text", "text": "Talk a lot."})
    await events_until(ws, "response.text.delta")
    await send(ws, {"type": "input_text", "text": "Stop, short please."})
    events = await events_until(ws, "response.done")
    events += await events_until(ws, "response.done")
    assert not [e for e in events if e["type"] == "error"]
    dones = [e for e in events if e["type"] == "response.done"]
    assert dones[0]["interrupted"] and dones[1]["text"] == "Short."
    await ws.disconnect()


async def test_a_crashed_holders_lease_expires(fake_openai, token, nova):
    fake_openai.script("First.", "After the crash.")
    conversation = (await chat(token, nova, "Hi")).json()["conversation_id"]
    state = ConversationState.objects.filter(conversation_id=conversation)
    await state.aupdate(turn_holder="gone", turn_expires_at=timezone.now() + timedelta(minutes=1))
    refused = await chat(token, nova, "Anyone?", conversation)
    assert (refused.status_code, refused.json()["code"]) == (409, "turn_in_progress")
    await state.aupdate(turn_expires_at=timezone.now() - timedelta(seconds=1))
    answered = await chat(token, nova, "Anyone now?", conversation)
    assert answered.status_code == 200 and answered.json()["text"] == "After the crash."
    assert (await state.aget()).turn_holder == ""  # Released with the reply.
