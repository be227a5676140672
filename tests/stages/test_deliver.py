"""The deliver stage: frames → wire events in order, audio paired, reports of what went out."""

from __future__ import annotations

import json

from voice.frames import (
    Failure,
    Interruption,
    Partial,
    ReplyDone,
    SentenceAudio,
    SentenceDelivered,
    SpeechDone,
    TextEnd,
)
from voice.stages.deliver import DeliverStage

from .helpers import run_stage, settle


class Socket:
    def __init__(self) -> None:
        self.frames: list[object] = []
        self.observed: list[str] = []

    async def send_text(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    async def broadcast(self, event: dict) -> None:
        self.observed.append(event["type"])


def audio(index: int, rid: str = "r1") -> SentenceAudio:
    return SentenceAudio(rid, index, b"A%d" % index, "pcm16", 16000, "fake", made_at=1.0)


async def test_audio_follows_its_event_and_reports_are_sent_after_writing():
    socket = Socket()
    stage = DeliverStage(
        socket.send_text,
        socket.send_bytes,
        max_items=10,
        broadcast=socket.broadcast,
        clock=lambda: 3.0,
    )
    done = ReplyDone("r1", "Hi.", False, "m2", "c1", metrics={"first_audio_ms": 5.0})
    run = await run_stage(stage, [audio(0), TextEnd("r1"), done])
    types = [f["type"] if isinstance(f, dict) else f for f in socket.frames]
    assert types == ["response.audio", b"A0", "response.done", "metrics"]
    assert socket.frames[0]["bytes"] == 2
    assert socket.frames[3] == {"type": "metrics", "response_id": "r1", "first_audio_ms": 5.0}
    assert run.up == [SentenceDelivered("r1", 0, 3.0, 1.0), SpeechDone("r1")]
    assert socket.observed == ["response.done"]  # Audio and metrics are not observed.


async def test_interruption_drops_waiting_audio_but_not_text():
    socket = Socket()
    stage = DeliverStage(socket.send_text, socket.send_bytes, max_items=10)
    run = await run_stage(stage, [], stop=False)
    for frame in (audio(0), audio(1), Partial("hey")):
        await stage.accept(frame)  # All queued: the writer has not run yet.
    await stage.accept(Interruption("barge-in"))
    await settle(stage)
    await stage.stop()
    assert socket.frames == [{"type": "transcript.partial", "text": "hey"}]
    assert run.up == []


async def test_a_client_that_does_not_read_overflows_once():
    socket = Socket()
    overflows: list[str] = []
    stage = DeliverStage(
        socket.send_text, socket.send_bytes, max_items=2, on_overflow=overflows.append
    )
    await run_stage(stage, [], stop=False)
    for n in range(5):
        await stage.accept(Failure("x", str(n)))
    await settle(stage)
    await stage.stop()
    assert len(overflows) == 1 and "slow client" in overflows[0]
    assert [f["message"] for f in socket.frames] == ["0", "1"]
