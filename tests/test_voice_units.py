"""Small parts of the voice loop: the speech clock, the wire protocol."""

from __future__ import annotations

import pytest

from voice import frames as f
from voice.clock import SpeechClock
from voice.protocol import ProtocolError, events_for, parse_client


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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


def parse(message: dict) -> object:
    import json

    return parse_client(json.dumps(message), max_text_chars=20)


def test_client_messages_become_frames():
    assert isinstance(parse({"type": "input_text", "text": " hi "}), f.TypedText)
    assert parse({"type": "input_text", "text": " hi "}).text == "hi"
    assert isinstance(parse({"type": "input_audio.commit"}), f.Commit)
    assert parse({"type": "response.cancel"}) == f.ClientCancel()
    assert parse({"type": "session.end"}) == f.EndRequest()
    assert parse({"type": "ping", "id": 3}) == f.Ping(3, True)
    assert parse({"type": "ping"}) == f.Ping(None, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ({"type": "server_vad"}, "server_vad")],
)
def test_turn_detection_is_parsed(value, expected):
    start = parse({"type": "session.start", "instance": "rosa", "turn_detection": value})
    assert start.turn_detection == expected
    assert parse({"type": "session.start", "instance": "rosa"}).turn_detection == "server_vad"


@pytest.mark.parametrize("value", ["manual", {"type": "semantic_vad"}, {}, 1])
def test_unknown_turn_detection_is_refused(value):
    with pytest.raises(ProtocolError) as error:
        parse({"type": "session.start", "instance": "rosa", "turn_detection": value})
    assert error.value.code == "invalid_message" and "turn_detection" in error.value.message


def test_frames_become_wire_events():
    audio = f.SentenceAudio("r", 2, b"xyz", "wav", 22050, "piper", made_at=0.0)
    assert events_for(audio) == [
        (
            {
                "type": "response.audio",
                "response_id": "r",
                "index": 2,
                "format": "wav",
                "sample_rate": 22050,
                "bytes": 3,
                "engine": "piper",
            },
            b"xyz",
        )
    ]
    done = f.ReplyDone("r", "Hi.", True, "m", "c", error="llm: x", metrics={"first_audio_ms": 1.0})
    assert [event for event, _ in events_for(done)] == [
        {
            "type": "response.done",
            "response_id": "r",
            "text": "Hi.",
            "interrupted": True,
            "message_id": "m",
            "conversation_id": "c",
            "error": "llm: x",
        },
        {"type": "metrics", "response_id": "r", "first_audio_ms": 1.0},
    ]
    assert events_for(f.TextEnd("r")) == []
    assert events_for(f.Pong(None, False)) == [({"type": "pong"}, None)]
