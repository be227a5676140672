"""Small parts of the voice loop: rate limiting, the speech clock, the outbox."""

from __future__ import annotations

import asyncio
import json

import pytest

from voice.clock import SpeechClock
from voice.limits import TurnRateLimiter
from voice.outbox import Outbox, OutboxOverflow


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_uses_a_sliding_minute():
    clock = FakeTime()
    limiter = TurnRateLimiter(2, clock=clock)
    assert limiter.allow() and limiter.allow()
    assert not limiter.allow()
    clock.now += 59.9
    assert not limiter.allow()
    clock.now += 0.2
    assert limiter.allow()


def test_speech_clock_maps_stream_time_to_arrival():
    clock = FakeTime()
    speech = SpeechClock(clock=clock)
    for _ in range(10):  # 10 chunks of 0.1 s, arriving 0.1 s apart
        speech.add(0.1)
        clock.now += 0.1
    assert speech.position == pytest.approx(1.0)
    assert speech.arrival_of(0.25) == pytest.approx(100.2)  # the third chunk arrived at 100.2
    assert speech.arrival_of(5.0) == pytest.approx(100.9)  # past the end: the last arrival
    assert speech.arrival_of(None) == clock.now


async def test_outbox_keeps_event_and_audio_together_and_drops_cancelled_audio():
    frames: list[object] = []

    async def send_text(text: str) -> None:
        frames.append(json.loads(text)["type"])

    async def send_bytes(data: bytes) -> None:
        frames.append(data)

    sent: list[int] = []
    outbox = Outbox(send_text, send_bytes, max_items=10)
    outbox.audio({"type": "response.audio"}, b"A", response_id="r1", on_sent=lambda: sent.append(1))
    outbox.audio({"type": "response.audio"}, b"B", response_id="r2")
    outbox.drop_audio_of("r2")
    outbox.event({"type": "response.done"})
    writer = asyncio.create_task(outbox.run())
    await outbox.drain(1)
    writer.cancel()
    assert frames == ["response.audio", b"A", "response.done"]
    assert sent == [1]


def test_outbox_is_bounded():
    async def noop(_):
        return None

    outbox = Outbox(noop, noop, max_items=2)
    outbox.event({"type": "a"})
    outbox.event({"type": "b"})
    try:
        outbox.event({"type": "c"})
    except OutboxOverflow as exc:
        assert "slow client" in str(exc)
    else:
        raise AssertionError("the third item should overflow")
