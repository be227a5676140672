"""Issue 21, item 1 over a real daphne: a text that crashes espeak-ng (in Piper's phonemizer or
in libespeak-ng) fails its request or its sentence; the server process lives on and serves the
next one, on HTTP and on a voice socket. (Normalisation, which defuses this text, is off.)"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets

from tests.fake_openai import FakeOpenAI
from tests.servers import fake_model_env, prepare_database, start_daphne

CRASH = "s'" * 110


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["piper", "espeak"])
def server(request, tmp_path_factory, fake_llm):
    env = fake_model_env(
        tmp_path_factory.mktemp(f"tts-{request.param}"),
        fake_llm,
        TTS_ENGINES=request.param,
        TTS_REPEAT_MAX="0",
        TTS_WORD_MAX_CHARS="0",
    )
    token = prepare_database(env)["token"]
    daphne = start_daphne(env)
    try:
        yield daphne, token, request.param
    finally:
        daphne.stop()


def speak(daphne, token: str, text: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        f"{daphne.http}/api/tts",
        data=json.dumps({"text": text, "language": "en", "format": "pcm16"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_api_tts_crash_fails_the_request_and_the_server_serves_the_next(server):
    daphne, token, engine = server
    status, _, body = speak(daphne, token, CRASH)
    assert status == 422, body
    assert json.loads(body)["code"] == "tts_failed"
    assert "crashed on this text" in json.loads(body)["detail"]
    assert daphne.process.poll() is None, daphne.output()
    status, headers, body = speak(daphne, token, "Hello there, how are you?")
    assert status == 200 and headers["X-Voz-Engine"] == engine
    assert len(body) > 20_000
    assert "died (killed by SIG" in daphne.output()


async def typed_turn(ws, text: str) -> list[dict]:
    await ws.send(json.dumps({"type": "input_text", "text": text}))
    events: list[dict] = []
    while True:
        frame = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(frame, str):
            events.append(json.loads(frame))
            if events[-1]["type"] == "metrics":
                return events


async def test_voice_turn_crash_fails_its_sentence_and_the_session_goes_on(server, fake_llm):
    daphne, token, engine = server
    fake_llm.script(f"{CRASH}.", "Fine, thank you.")
    async with websockets.connect(
        f"{daphne.ws}/ws/voice/", subprotocols=["voz.v1", f"bearer.{token}"], max_size=2**24
    ) as ws:
        await ws.send(
            json.dumps(
                {"type": "session.start", "instance": "nova", "output_audio": {"format": "wav"}}
            )
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "session.started"
        events = await typed_turn(ws, "Repeat after me")
        errors = [e for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["tts_failed"], errors
        assert "crashed on this text" in errors[0]["message"]
        events = await typed_turn(ws, "How are you?")
        assert not [e for e in events if e["type"] == "error"]
        audio = [e for e in events if e["type"] == "response.audio"]
        assert audio and {e["engine"] for e in audio} == {engine}
    assert daphne.process.poll() is None
