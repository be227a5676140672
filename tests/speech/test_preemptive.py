"""Preemptive generation in the live loop (real VAD and Whisper, the fake OpenAI server): the
model starts at a likely end of turn; nothing early is stored or sent; a changed final discards
the early work and only the confirmed turn is stored and answered."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from characters.models import Message
from tests.voice_helpers import connect, events_until, start_session

from .hearing_samples import piper, silence, word_error

pytestmark = pytest.mark.django_db(transaction=True)
FRAME = 16000 * 2 // 25  # 40 ms
FIRST = "I would like to order"
MORE = "a large pot of green tea please."  # no comma: one pause, so exactly one early start


@pytest.fixture
def nova(nova, settings):
    settings.TTS_ENGINES = ["piper", "espeak"]
    settings.TURN_DETECTOR = "silence"  # deterministic: the turn ends after TURN_SILENCE_MS
    settings.TURN_SILENCE_MS = 2500
    settings.TURN_MIN_DELAY_MS = 200
    return nova


async def stream(ws, pcm: bytes) -> None:
    for position in range(0, len(pcm), FRAME):
        await ws.send_to(bytes_data=pcm[position : position + FRAME])


async def requests_reach(fake_openai, count: int, seconds: float = 60) -> None:
    for _ in range(int(seconds * 20)):
        if len(fake_openai.chat_requests) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the model was not called {count} time(s)")


def last_user(request) -> str:
    return [m["content"] for m in request.messages if m["role"] == "user"][-1]


async def stored(role: str) -> list[Message]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(role=role).order_by("created_at"))
    )()


async def test_a_changed_final_discards_the_early_reply(token, nova, fake_openai):
    fake_openai.script("EARLY reply that nobody hears.", "Green tea it is.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await stream(ws, silence(0.3) + piper(FIRST) + silence(0.8))
    await requests_reach(fake_openai, 1)  # started before the turn was confirmed
    assert word_error(FIRST, last_user(fake_openai.chat_requests[0])) <= 0.2
    assert await stored("user") == [], "nothing stored before the turn is confirmed"
    await stream(ws, piper(MORE) + silence(3.0))  # the user went on: a different final
    events = await events_until(ws, "metrics", timeout=90)
    finals = [e["text"] for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 1 and word_error(f"{FIRST} {MORE}", finals[0]) <= 0.2, finals
    assert len(fake_openai.chat_requests) == 2
    assert last_user(fake_openai.chat_requests[1]) == finals[0]
    sent = " ".join(str(e) for e in events)
    assert "EARLY" not in sent, "nothing of the early reply was sent"
    # The second request started early too, on the whole turn, at the next pause: it matched.
    assert events[-1]["preempted"] is True
    users, replies = await stored("user"), await stored("assistant")
    assert [m.text for m in users] == finals
    assert [m.text for m in replies] == ["Green tea it is."]
    await ws.disconnect()


async def test_a_confirmed_turn_continues_the_early_reply(token, nova, fake_openai):
    fake_openai.script("Right away.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await stream(ws, silence(0.3) + piper(FIRST) + silence(3.0))
    events = await events_until(ws, "metrics", timeout=90)
    final = next(e for e in events if e["type"] == "transcript.final")
    assert len(fake_openai.chat_requests) == 1, "the early stream was handed over"
    assert last_user(fake_openai.chat_requests[0]) == final["text"]
    assert events[-1]["preempted"] is True
    done = next(e for e in events if e["type"] == "response.done")
    assert done["text"] == "Right away." and not done["interrupted"]
    assert [m.text for m in await stored("assistant")] == ["Right away."]
    await ws.disconnect()


async def test_preemption_can_be_turned_off(token, nova, fake_openai, settings):
    settings.PREEMPTIVE_GENERATION = False
    fake_openai.script("Right away.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await stream(ws, silence(0.3) + piper(FIRST) + silence(3.0))
    events = await events_until(ws, "metrics", timeout=90)
    assert len(fake_openai.chat_requests) == 1 and events[-1]["preempted"] is False
    await ws.disconnect()
