"""The whole chain with in-memory engines: typed turns, barge-in, the order on the wire."""

from __future__ import annotations

import asyncio

from audio_pipeline.sentences import SentenceSplitter
from voice.frames import ClientCancel, Failure, TypedText
from voice.pipeline import Pipeline
from voice.stages.deliver import DeliverStage
from voice.stages.recognise import RecogniseStage
from voice.stages.reply import ReplyStage
from voice.stages.speak import SpeakStage
from voice.stages.split import SplitStage
from voice.stages.turns import TurnsStage

from .fakes import FakeConversation, FakeRecogniser, FakeVoice
from .test_deliver import Socket


def chain(conversation: FakeConversation, voice: FakeVoice, socket: Socket):
    async def open_recogniser():
        return FakeRecogniser([])

    return Pipeline(
        [
            RecogniseStage(open_recogniser, input_rate=16000),
            TurnsStage(),
            ReplyStage(conversation.open_turn),
            SplitStage(SentenceSplitter),
            SpeakStage(voice),
            DeliverStage(socket.send_text, socket.send_bytes, max_items=100),
        ]
    )


async def wait_for(socket: Socket, kind: str, count: int = 1, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.005)):
        if sum(1 for f in socket.frames if isinstance(f, dict) and f["type"] == kind) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {kind} in {socket.frames}")


def kinds(socket: Socket) -> list[str]:
    return [f["type"] if isinstance(f, dict) else "<audio>" for f in socket.frames]


async def test_a_typed_turn_in_protocol_order():
    conversation = FakeConversation(["Hello there. ", "Shall we ", "fly?"])
    socket = Socket()
    pipeline = chain(conversation, FakeVoice(), socket)
    pipeline.start()
    await pipeline.send(TypedText("Hi", at=0.0))
    await wait_for(socket, "metrics")
    await pipeline.close()
    seen = kinds(socket)
    assert seen[:2] == ["transcript.final", "response.started"]
    assert seen[-2:] == ["response.done", "metrics"]
    audio_events = [
        f for f in socket.frames if isinstance(f, dict) and f["type"] == "response.audio"
    ]
    assert [a["index"] for a in audio_events] == [0, 1]
    for position, frame in enumerate(socket.frames):
        if isinstance(frame, dict) and frame["type"] == "response.audio":
            assert isinstance(socket.frames[position + 1], bytes)
    sentence_at = seen.index("response.sentence")
    assert sentence_at < seen.index("response.audio")
    done = socket.frames[-2]
    assert done["text"] == "Hello there. Shall we fly?" and done["interrupted"] is False
    assert conversation.messages[-1].text == "Hello there. Shall we fly?"


async def test_cancel_while_speaking_stops_audio_and_stores_what_was_heard():
    conversation = FakeConversation(["One. ", "Two. ", "Three. ", "Four."])
    voice = FakeVoice(allow=2)  # The third sentence hangs in synthesis.
    socket = Socket()
    pipeline = chain(conversation, voice, socket)
    pipeline.start()
    await pipeline.send(TypedText("Talk", at=0.0))
    await wait_for(socket, "response.audio", count=2)
    await pipeline.send(ClientCancel())
    await wait_for(socket, "metrics")
    await pipeline.close()
    seen = kinds(socket)
    done = next(f for f in socket.frames if isinstance(f, dict) and f["type"] == "response.done")
    assert done["interrupted"] is True
    heard = [
        f["index"] for f in socket.frames if isinstance(f, dict) and f["type"] == "response.audio"
    ]
    assert heard and heard == list(range(len(heard)))
    assert seen.index("response.done") > max(i for i, k in enumerate(seen) if k == "<audio>")
    assert "response.audio" not in seen[seen.index("response.done") :]
    stored = conversation.messages[1]
    assert stored.interrupted and stored.text == done["text"]
    assert heard == [0, 1] and done["text"] == "One. Two."


async def test_a_session_without_speech_never_opens_the_recogniser_and_typed_turns_work():
    conversation = FakeConversation(["Fine."])
    socket = Socket()
    pipeline = chain(conversation, FakeVoice(), socket)
    pipeline.start()
    await pipeline.send(TypedText("One", at=0.0))
    await pipeline.send(TypedText("Two", at=0.0))
    await wait_for(socket, "metrics", count=2)
    await pipeline.close()
    assert not pipeline.stages[0].opened
    assert [
        f["text"] for f in socket.frames if isinstance(f, dict) and f["type"] == "transcript.final"
    ] == [
        "One",
        "Two",
    ]
    assert not [f for f in socket.frames if isinstance(f, Failure)]
