"""A hypothesis fuzzer over the voice WebSocket protocol (issue 14 item 8).

Each example is one session (an English instance with speech recognition, or a Spanish one
without) fed a batch of frames drawn from: every message type with well- and ill-typed fields,
strings with NUL, lone surrogates and control characters, deep and wide JSON, non-JSON text,
oversized text and binary frames, odd-length and empty audio. `session.end` is left out (it ends
the session on purpose). At the end of each example the session must still answer `ping`; over
the whole run at least FUZZ_FRAMES frames are sent (default 10,000; printed) and no ERROR record
or traceback may reach the log.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES = int(os.environ.get("FUZZ_FRAMES", "10000"))
PER_SESSION = 250
TYPES = [
    "ping",
    "session.start",
    "input_text",
    "input_audio.commit",
    "response.cancel",
    "session.update",
    "",
    "PING",
    "input_audio",
]
NASTY = ["\x00", "x\ud83d", "\udc00y", "\u202e", "\ufeff", "é" * 300, "\n\t\r", "😀" * 50, "ó"]

texts = st.one_of(st.text(max_size=40), st.sampled_from(NASTY), st.text(max_size=3000))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "instance": st.one_of(st.sampled_from(["rosa", "ROSA", "nova-en", "nadie"]), texts),
        "text": json_values,
        "language": st.one_of(st.sampled_from(["es", "en", "ko", "xx"]), json_values),
        "conversation": json_values,
        "input_audio": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "format": st.sampled_from(["pcm16", "opus", 7]),
                    "sample_rate": st.one_of(st.integers(), st.sampled_from([8000, 16000, 48000])),
                },
            ),
            json_values,
        ),
        "output_audio": json_values,
    },
)
messages = st.builds(
    lambda kind, rest: json.dumps({"type": kind, **rest}),
    st.one_of(st.sampled_from(TYPES), texts, json_values),
    fields,
)
raw_text = st.one_of(
    st.text(max_size=200),
    st.integers(1, 2000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 200).map(lambda n: '{"type":"ping","id":' + '{"a":' * n + "1" + "}" * n + "}"),
    st.just('{"type": "ping"'),
    st.integers(60_000, 200_000).map(lambda n: json.dumps({"type": "ping", "id": "x" * n})),
)
audio = st.one_of(
    st.binary(max_size=640),
    st.integers(65_000, 70_000).map(bytes),
    st.just(b""),
)
frames = st.lists(
    st.one_of(
        messages.map(lambda text: ("text", text)),
        messages.map(lambda text: ("text", text)),
        raw_text.map(lambda text: ("text", text)),
        audio.map(lambda data: ("bytes", data)),
    ),
    min_size=PER_SESSION,
    max_size=PER_SESSION,
)


class Tally:
    frames = 0
    sessions = 0


@pytest.fixture
def fuzz_setup(settings, make_user, make_token, make_instance, fake_openai, caplog):
    settings.WS_TURNS_PER_MINUTE = 3  # Replies are real (fake model, espeak): keep them few.
    settings.TTS_ENGINES = ["espeak"]
    owner = make_user("fuzzer")
    make_instance(owner, name="rosa", language="es")
    make_instance(owner, name="nova-en", language="en")
    caplog.set_level(logging.WARNING)
    return make_token(owner)


async def _session(token: str, instance: str, batch: list[tuple[str, object]]) -> None:
    ws = WebsocketCommunicator(application, f"/ws/voice/?token={token}")
    connected, _ = await ws.connect()
    assert connected
    await ws.send_to(text_data=json.dumps({"type": "session.start", "instance": instance}))
    for kind, payload in batch:  # send_input: the test client refuses empty frames itself.
        await ws.send_input({"type": "websocket.receive", kind: payload})
    await ws.send_to(text_data=json.dumps({"type": "ping", "id": "still-there"}))
    for _ in range(100_000):
        frame = await ws.receive_output(60)
        assert frame["type"] != "websocket.close", f"session closed: {frame}"
        if frame.get("text") and json.loads(frame["text"]) == {"type": "pong", "id": "still-there"}:
            break
    await ws.disconnect()


def test_fuzzed_frames_leave_every_session_answering_and_the_log_clean(fuzz_setup, caplog, capsys):
    token = fuzz_setup
    examples = -(-FRAMES // PER_SESSION)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(instance=st.sampled_from(["rosa", "nova-en"]), batch=frames)
    def one_session(instance, batch):
        async_to_sync(_session)(token, instance, batch)
        Tally.frames += len(batch)
        Tally.sessions += 1

    one_session()
    with capsys.disabled():
        print(f"\nfuzzer: {Tally.frames} frames over {Tally.sessions} sessions")
    assert Tally.frames >= FRAMES
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad[:5]]
