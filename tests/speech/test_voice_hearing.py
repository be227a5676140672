"""Voice activity in the live loop (real Silero VAD, Smart Turn, Whisper): turns that end by
themselves, interruptions that need real speech, and push-to-talk that waits for its commit."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from characters.models import Message
from tests.fake_openai import Reply
from tests.voice_helpers import connect, events_until, next_event, send, start_session

from .hearing_samples import espeak, noise, piper, silence, word_error

pytestmark = pytest.mark.django_db(transaction=True)
FRAME = 16000 * 2 // 25  # 40 ms


@pytest.fixture
def nova(nova, settings):
    settings.TTS_ENGINES = ["piper", "espeak"]
    return nova


async def stream(ws, pcm: bytes) -> None:
    for position in range(0, len(pcm), FRAME):
        await ws.send_to(bytes_data=pcm[position : position + FRAME])


async def quiet_for(ws, seconds: float) -> list[dict]:
    """Every event that arrives within `seconds` (the loop keeps working meanwhile)."""
    seen = []
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        # receive_nothing never cancels the application (a receive timeout would).
        if not await ws.receive_nothing(timeout=0.05, interval=0.01):
            seen.append(await next_event(ws))
    return seen


async def test_a_spoken_turn_ends_by_itself_with_the_breakdown(token, nova, fake_openai):
    fake_openai.script("It opens at nine.")
    ws = await connect(token)
    await start_session(ws, "nova")
    text = "What time does the store open tomorrow?"
    await stream(ws, silence(0.3) + piper(text) + silence(1.5))  # no input_audio.commit
    events = await events_until(ws, "metrics", timeout=90)
    final = next(e for e in events if e["type"] == "transcript.final")
    assert word_error(text, final["text"]) <= 0.15, final
    metrics = events[-1]
    assert metrics["turn_end_ms"] is not None and metrics["turn_end_ms"] >= 0
    assert metrics["stt_final_ms"] >= metrics["turn_end_ms"] - 1
    assert metrics["first_audio_ms"] >= metrics["stt_final_ms"]
    await ws.disconnect()


async def test_short_sounds_let_the_reply_go_on_and_a_sentence_stops_it(token, nova, fake_openai):
    # Long enough to outlast the whole test on a fast machine (it must be cut, never finish).
    long_reply = " ".join(f"Part {n} of a long answer." for n in range(1, 400))
    fake_openai.script(Reply(long_reply, token_delay=0.05), "All right.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "Talk for a while"})
    seen = await events_until(ws, "<binary>", timeout=30)
    response_id = next(e for e in seen if e["type"] == "response.started")["response_id"]
    # A 150 ms noise burst, then a short "mm" (~220 ms of voice): neither interrupts.
    await stream(ws, noise(0.15, 8000) + silence(0.6) + espeak("mm", "en-us", 300) + silence(0.8))
    meanwhile = await quiet_for(ws, 4.0)
    kinds = {e["type"] for e in meanwhile}
    assert "response.done" not in kinds and "input_audio.speech_started" not in kinds
    assert "transcript.final" not in kinds, "a false interruption is not a turn"
    assert kinds & {"response.text.delta", "response.sentence"}, "the reply went on"
    # A real sentence interrupts within 300 ms of speech.
    await stream(ws, piper("Wait, stop, I have a question about the engines.") + silence(1.5))
    after = await events_until(ws, "response.done", timeout=60)
    started = next(e for e in after if e["type"] == "input_audio.speech_started")
    assert 250 <= started["speech_ms"] <= 300
    done = after[-1]
    assert done["response_id"] == response_id and done["interrupted"] is True
    late = after[after.index(started) :]
    assert not [
        e for e in late if e["type"] == "response.audio" and e["response_id"] == response_id
    ]
    await events_until(ws, "metrics", timeout=30)
    stored = await database_sync_to_async(
        lambda: Message.objects.filter(role="assistant").order_by("created_at").first()
    )()
    assert stored.interrupted and stored.text == done["text"], "stored what was heard"
    await ws.disconnect()


async def test_push_to_talk_waits_for_the_commit(token, nova, fake_openai):
    fake_openai.script("Sure.")
    ws = await connect(token)
    await start_session(ws, "nova", turn_detection=None)
    text = "Please remind me to call my sister."
    await stream(ws, silence(0.3) + piper(text) + silence(1.5))
    meanwhile = await quiet_for(ws, 3.0)
    assert "transcript.final" not in {e["type"] for e in meanwhile}, "no server-side end of turn"
    await send(ws, {"type": "input_audio.commit"})
    events = await events_until(ws, "metrics", timeout=60)
    final = next(e for e in events if e["type"] == "transcript.final")
    assert word_error(text, final["text"]) <= 0.15, final
    assert events[-1]["turn_end_ms"] is None, "the client ended this turn"
    await ws.disconnect()
