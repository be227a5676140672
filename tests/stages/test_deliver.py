"""The deliver stage: frames → wire events in order, audio paired, reports of what went out."""

from __future__ import annotations

import json

from voice.frames import (
    Failure,
    Interruption,
    Partial,
    PauseReply,
    ReplyDone,
    ResumeReply,
    SentenceAudio,
    SentenceDelivered,
    SpeechDone,
    TextDelta,
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


async def test_text_deltas_waiting_together_go_out_as_one_event_in_order():
    """Deltas queued behind each other (the socket is behind) are merged into one event; a
    delta of another reply, or anything else in between, is a boundary."""
    socket = Socket()
    stage = DeliverStage(socket.send_text, socket.send_bytes, max_items=20)
    run = await run_stage(stage, [], stop=False)
    for frame in (
        TextDelta("r1", "The "),
        TextDelta("r1", "stars "),
        TextDelta("r1", "are "),
        audio(0),
        TextDelta("r1", "bright"),
        TextDelta("r2", "."),
        TextEnd("r1"),
    ):
        await stage.accept(frame)  # All queued: the writer has not run yet.
    await settle(stage)
    await stage.stop()
    deltas = [f for f in socket.frames if isinstance(f, dict) and "delta" in f]
    assert deltas == [
        {"type": "response.text.delta", "response_id": "r1", "delta": "The stars are "},
        {"type": "response.text.delta", "response_id": "r1", "delta": "bright"},
        {"type": "response.text.delta", "response_id": "r2", "delta": "."},
    ]
    types = [f["type"] if isinstance(f, dict) else f for f in socket.frames]
    assert types.index("response.audio") == 1, "the audio stays between the deltas it was between"
    assert run.up[-1] == SpeechDone("r1")


async def test_a_delta_alone_goes_out_at_once():
    socket = Socket()
    stage = DeliverStage(socket.send_text, socket.send_bytes, max_items=20)
    await run_stage(stage, [TextDelta("r1", "Hi")])
    assert socket.frames == [{"type": "response.text.delta", "response_id": "r1", "delta": "Hi"}]


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


async def test_a_paused_reply_is_held_then_resumed_in_order():
    socket = Socket()
    stage = DeliverStage(socket.send_text, socket.send_bytes, max_items=10, clock=lambda: 4.0)
    run = await run_stage(stage, [audio(0)], stop=False)
    await stage.accept(PauseReply())
    for frame in (audio(1), Partial("mm"), audio(2), TextEnd("r1")):
        await stage.accept(frame)
    await settle(stage)
    sent = [f["type"] if isinstance(f, dict) else f for f in socket.frames]
    assert sent == ["response.audio", b"A0", "transcript.partial"], "held, but not the partial"
    assert [r.index for r in run.up if isinstance(r, SentenceDelivered)] == [0]
    await stage.accept(ResumeReply("r1"))
    await settle(stage)
    await stage.stop()
    sent = [f["type"] if isinstance(f, dict) else f for f in socket.frames]
    assert sent[3:] == ["response.resumed", "response.audio", b"A1", "response.audio", b"A2"]
    assert socket.frames[3] == {"type": "response.resumed", "response_id": "r1"}
    assert [r.index for r in run.up if isinstance(r, SentenceDelivered)] == [0, 1, 2]
    assert run.up[-1] == SpeechDone("r1")


async def test_an_interruption_drops_the_held_audio_so_it_is_never_heard():
    socket = Socket()
    stage = DeliverStage(socket.send_text, socket.send_bytes, max_items=10)
    run = await run_stage(stage, [PauseReply()], stop=False)
    for frame in (audio(0), TextEnd("r1")):
        await stage.accept(frame)
    await stage.accept(Interruption("barge-in"))
    done = ReplyDone("r1", "", True, "m2", "c1")
    await stage.accept(done)
    await settle(stage)
    await stage.stop()
    assert [f["type"] for f in socket.frames] == ["response.done", "metrics"]
    assert run.up == [SpeechDone("r1")]  # The text's end went out; no audio was delivered.
