"""The voice loop over a real network: daphne processes, a `websockets` client, Redis between two
servers, and the reference client, with speech generated offline and the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import wave

import pytest
import websockets

from audio_pipeline.formats import decode_audio
from tests.fake_openai import FakeOpenAI, Reply
from tests.servers import ROOT, fake_model_env, prepare_database, start_daphne
from tests.speech_samples import key_words_found

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "A fine question. Coffee keeps the crew awake on long nights."


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeOpenAI().start()
    server.default_reply = Reply(REPLY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_llm):
    """One database, two daphne servers sharing a Redis channel layer."""
    env = fake_model_env(tmp_path_factory.mktemp("voice"), fake_llm, REDIS_URL=REDIS_URL)
    credentials = prepare_database(env)
    first, second = start_daphne(env), start_daphne(env)
    try:
        yield first, second, credentials["token"]
    finally:
        first.stop()
        second.stop()


def chunks_of(pcm: bytes, rate: int, seconds: float = 0.04):
    step = int(rate * seconds) * 2
    for position in range(0, len(pcm), step):
        yield pcm[position : position + step]


async def talk(url: str, token: str, pcm: bytes, rate: int) -> list:
    """Speak `pcm` to instance nova and collect every frame until the turn's metrics."""
    frames: list = []
    async with websockets.connect(
        f"{url}/ws/voice/", subprotocols=["voz.v1", f"bearer.{token}"], max_size=2**24
    ) as ws:
        assert ws.subprotocol == "voz.v1"
        await ws.send(
            json.dumps(
                {
                    "type": "session.start",
                    "instance": "nova",
                    "input_audio": {"format": "pcm16", "sample_rate": rate},
                    "output_audio": {"format": "wav"},
                }
            )
        )
        started = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert started["type"] == "session.started", started
        for chunk in chunks_of(pcm + b"\x00\x00" * (rate // 2), rate):
            await ws.send(chunk)
            await asyncio.sleep(0.005)
        await ws.send(json.dumps({"type": "input_audio.commit"}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 60)
            frames.append(frame if isinstance(frame, bytes) else json.loads(frame))
            if isinstance(frames[-1], dict) and frames[-1]["type"] == "metrics":
                return frames


def test_speech_in_reply_and_audio_out_over_daphne(stack, english_speech):
    first, _, token = stack
    pcm, rate = english_speech  # Piper speech at 22,050 Hz: the server resamples it.
    frames = asyncio.run(talk(first.ws, token, pcm, rate))
    events = [f for f in frames if isinstance(f, dict)]
    kinds = [e["type"] for e in events]
    final = next(e for e in events if e["type"] == "transcript.final")
    assert key_words_found(final["text"], ("weather", "nice", "today", "coffee"), 3), final
    assert kinds.index("transcript.final") < kinds.index("response.started")
    assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == REPLY
    # Every response.audio is immediately followed by its binary frame, in sentence order.
    indices = []
    for position, frame in enumerate(frames):
        if isinstance(frame, dict) and frame["type"] == "response.audio":
            audio = frames[position + 1]
            assert isinstance(audio, bytes) and len(audio) == frame["bytes"]
            assert decode_audio(audio, target_rate=16000).duration_s > 0.3
            indices.append(frame["index"])
    assert indices == [0, 1]
    done = next(e for e in events if e["type"] == "response.done")
    assert done["text"] == REPLY and not done["interrupted"]
    metrics = events[-1]
    assert metrics["first_audio_ms"] is not None and metrics["stt_final_ms"] is not None


async def observe_on_second_while_talking_on_first(stack, pcm: bytes, rate: int):
    first, second, token = stack
    async with websockets.connect(f"{second.ws}/ws/observe/nova/?token={token}") as observer:
        assert json.loads(await observer.recv())["type"] == "observe.started"
        talking = asyncio.create_task(talk(first.ws, token, pcm, rate))
        seen = []
        while not seen or seen[-1]["type"] != "response.done":
            seen.append(json.loads(await asyncio.wait_for(observer.recv(), 60)))
        await talking
        return seen


@pytest.mark.redis
def test_observe_endpoint_across_two_processes_over_redis(stack, english_speech):
    pcm, rate = english_speech
    seen = asyncio.run(observe_on_second_while_talking_on_first(stack, pcm, rate))
    kinds = [event["type"] for event in seen]
    assert "transcript.final" in kinds and "response.text.delta" in kinds
    assert seen[-1]["text"] == REPLY
    assert len({event["session_id"] for event in seen}) == 1


def test_reference_client_speaks_a_wav_and_saves_the_reply(stack, english_speech, tmp_path):
    first, _, token = stack
    pcm, rate = english_speech
    speech = tmp_path / "speech.wav"
    with wave.open(str(speech), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    out = tmp_path / "reply"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.voice_client",
            "--url",
            f"{first.ws}/ws/voice/",
            "--token",
            token,
            "--instance",
            "nova",
            "--out",
            str(out),
            str(speech),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr + first.output()[-3000:]
    assert '"type": "transcript.final"' in result.stdout
    assert '"type": "metrics"' in result.stdout
    saved = sorted(out.glob("*.wav"))
    assert len(saved) == 2
    assert all(decode_audio(p.read_bytes(), target_rate=16000).duration_s > 0.3 for p in saved)
    assert token not in result.stdout


def test_tokens_never_reach_the_server_log(stack):
    first, _, token = stack

    async def ping_with_query_token() -> dict:
        async with websockets.connect(f"{first.ws}/ws/voice/?token={token}") as ws:
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(ping_with_query_token()) == {"type": "pong", "id": 1}
    log = first.output()
    assert "WSCONNECT /ws/voice/" in log
    assert token not in log
    assert token[len("voz_") : len("voz_") + 12] not in log
