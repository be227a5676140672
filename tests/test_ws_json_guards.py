"""Issue 21 item 6 on every socket, and the language of session.start (item 11).

A number of more than 4,300 digits used to end the voice session (`AttributeError` reading the
parse error), and NaN/Infinity were echoed back as JSON a browser cannot parse. Every frame the
server sends is read here with a strict parser (as `JSON.parse` would)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from channels.testing import WebsocketCommunicator

from realtime.asgi import application
from tests.fake_openai import FakeOpenAI
from tests.servers import fake_model_env, prepare_database, start_daphne

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = "1" * 5000


def strict(raw: str) -> dict[str, Any]:
    def refuse(name: str):
        raise AssertionError(f"the server sent {name}, which is not JSON: {raw[:200]}")

    return json.loads(raw, parse_constant=refuse)


async def receive(ws: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """The next text frame, parsed strictly (binary frames are skipped)."""
    while True:
        frame = await ws.receive_output(timeout)
        if frame["type"] == "websocket.close":
            return {"type": "<close>", "code": frame.get("code")}
        if frame.get("text") is not None:
            return strict(frame["text"])


async def until(ws: WebsocketCommunicator, kind: str) -> list[dict[str, Any]]:
    events = []
    while True:
        events.append(await receive(ws))
        if events[-1]["type"] in (kind, "<close>"):
            return events


async def answers_ping(ws: WebsocketCommunicator) -> bool:
    await ws.send_to(text_data='{"type": "ping", "id": "alive"}')
    events = await until(ws, "pong")
    return events[-1] == {"type": "pong", "id": "alive"} or events[-1].get("id") == "alive"


async def open_socket(path: str, token: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"{path}?token={token}")
    connected, code = await ws.connect()
    assert connected, code
    return ws


def _bad_json(event: dict[str, Any], *words: str) -> None:
    assert (event["type"], event["code"], event["fatal"]) == ("error", "bad_json", False), event
    for word in words:
        assert word in event["message"], event


# Voice: each message type with a 5,000-digit number, before and after session.start --------

VOICE_MESSAGES = {
    "type": f'{{"type": {HUGE}}}',
    "session.start": f'{{"type": "session.start", "instance": "rosa", '
    f'"input_audio": {{"format": "pcm16", "sample_rate": {HUGE}}}}}',
    "session.start-language": f'{{"type": "session.start", "instance": "rosa", "language": {HUGE}}}',
    "input_text": f'{{"type": "input_text", "text": "hola", "n": {HUGE}}}',
    "input_audio.commit": f'{{"type": "input_audio.commit", "at": {HUGE}}}',
    "response.cancel": f'{{"type": "response.cancel", "response_id": {HUGE}}}',
    "session.end": f'{{"type": "session.end", "x": -{HUGE}}}',
    "ping": f'{{"type": "ping", "id": {HUGE}}}',
    "ping-float": f'{{"type": "ping", "id": 0.{HUGE}}}',
}


async def test_a_5000_digit_number_in_any_voice_message_is_a_bad_json_and_the_session_goes_on(
    token, instance, fake_openai
):
    ws = await open_socket("/ws/voice/", token)
    for raw in VOICE_MESSAGES.values():  # Before session.start
        await ws.send_to(text_data=raw)
        _bad_json(await receive(ws), "at most 100")
    assert await answers_ping(ws)
    await ws.send_to(text_data='{"type": "session.start", "instance": "rosa"}')
    assert (await until(ws, "session.started"))[-1]["type"] == "session.started"
    for raw in VOICE_MESSAGES.values():  # And during the session.
        await ws.send_to(text_data=raw)
        _bad_json(await receive(ws), "at most 100")
        assert await answers_ping(ws)
    assert fake_openai.requests == []
    await ws.disconnect()


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        ("NaN", ("NaN",)),
        ("Infinity", ("Infinity",)),
        ("-Infinity", ("-Infinity",)),
        ("1e999", ("1e999", "infinite")),
    ],
)
async def test_nan_and_infinity_are_refused_not_echoed(token, instance, literal, words):
    ws = await open_socket("/ws/voice/", token)
    await ws.send_to(text_data='{"type": "session.start", "instance": "rosa"}')
    await until(ws, "session.started")
    await ws.send_to(text_data=f'{{"type": "ping", "id": {literal}}}')
    _bad_json(await receive(ws), *words)
    assert await answers_ping(ws)
    await ws.disconnect()


@pytest.mark.parametrize("path", ["/ws/ping/", "/ws/observe/rosa/"])
async def test_observe_and_ping_sockets_refuse_huge_numbers_and_nan(token, instance, path):
    ws = await open_socket(path, token)
    await receive(ws)  # hello / observe.started
    for raw, words in [
        (f'{{"type": "ping", "id": {HUGE}}}', ("at most 100",)),
        (f'{{"type": {HUGE}}}', ("at most 100",)),
        ('{"type": "ping", "id": NaN}', ("NaN",)),
        ('{"type": "ping", "id": [Infinity]}', ("Infinity",)),
    ]:
        await ws.send_to(text_data=raw)
        _bad_json(await receive(ws), *words)
        await ws.send_to(text_data='{"type": "ping"}')
        assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


# Language at session.start (item 11) -------------------------------------------------------


@pytest.mark.parametrize(
    "language", ["../../../../etc", "es/../../x", "e", "ES", "es_ES", "es\n", 7]
)
async def test_session_start_refuses_a_language_that_is_not_a_tag(token, instance, language):
    ws = await open_socket("/ws/voice/", token)
    await ws.send_to(
        text_data=json.dumps({"type": "session.start", "instance": "rosa", "language": language})
    )
    event = await receive(ws)
    assert (event["code"], event["fatal"]) == ("invalid_message", False), event
    assert "language tag" in event["message"]
    await ws.send_to(text_data='{"type": "session.start", "instance": "rosa", "language": "es"}')
    started = (await until(ws, "session.started"))[-1]
    assert started["language"] == "es"
    await ws.disconnect()


async def test_session_start_refuses_a_language_no_tts_engine_speaks(token, instance, settings):
    settings.TTS_ENGINES = ["piper", "espeak"]  # Offline engines (edge-tts takes any voice).
    ws = await open_socket("/ws/voice/", token)
    await ws.send_to(text_data='{"type": "session.start", "instance": "rosa", "language": "xx"}')
    event = await receive(ws)
    assert (event["code"], event["fatal"]) == ("language_unsupported", False), event
    assert "'xx'" in event["message"]
    # Text replies need no voice: the same language is fine without audio out.
    await ws.send_to(
        text_data='{"type": "session.start", "instance": "rosa", "language": "xx", '
        '"output_audio": {"format": "none"}}'
    )
    started = (await until(ws, "session.started"))[-1]
    assert (started["language"], started["tts_engines"]) == ("xx", [])
    await ws.disconnect()


@pytest.mark.django_db
def test_every_http_door_refuses_a_path_as_a_language(api, character):
    bad = "../../../../etc"
    answers = [
        api.post("/api/tts", {"text": "hola", "language": bad}),
        api.client.post(f"/api/stt?language={bad}", b"RIFF", "audio/wav", headers=api._headers()),
        api.client.post(
            "/api/stt",
            {"language": bad, "file": _wav_upload()},
            headers=api._headers(),
        ),
        api.patch(f"/api/characters/{character.id}", {"language": bad}),
        api.post("/api/characters", {"name": "X", "description": "x", "language": bad}),
    ]
    for response in answers:
        assert response.status_code == 422, response.content
        body = strict(response.content.decode())
        assert body["errors"][0]["field"] == "language", body
    character.refresh_from_db()
    assert character.language == "es"


def _wav_upload():
    import io
    import wave

    from django.core.files.uploadedfile import SimpleUploadedFile

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(3200))
    return SimpleUploadedFile("a.wav", buffer.getvalue(), content_type="audio/wav")


# Over a real daphne ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    llm = FakeOpenAI().start()
    env = fake_model_env(tmp_path_factory.mktemp("json-guards"), llm, TTS_ENGINES="espeak")
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"]
    finally:
        server.stop()
        llm.stop()


async def _next(ws) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.recv(), 30)
        if isinstance(frame, str):
            return strict(frame)


async def test_over_daphne_huge_numbers_and_nan_leave_the_voice_session_answering(served):
    server, token = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await ws.send('{"type": "session.start", "instance": "nova"}')
        while (event := await _next(ws))["type"] != "session.started":
            assert event["type"] != "error", event
        for raw in [*VOICE_MESSAGES.values(), '{"type": "ping", "id": NaN}']:
            await ws.send(raw)
            _bad_json(await _next(ws))
            await ws.send('{"type": "ping", "id": 1}')
            assert await _next(ws) == {"type": "pong", "id": 1}
        await ws.send('{"type": "session.start", "instance": "nova", "language": "../../etc"}')
        assert (await _next(ws))["code"] == "invalid_message"
        await ws.send('{"type": "ping", "id": 2}')
        assert await _next(ws) == {"type": "pong", "id": 2}
    assert "Traceback" not in server.output()


async def test_over_daphne_sse_with_a_lying_content_type_is_answered_at_once(served):
    """The issue's example: the SSE form sent no byte in 100 s."""
    import urllib.error
    import urllib.request

    server, token = served

    def instance_id() -> str:
        lookup = urllib.request.Request(
            f"{server.http}/api/instances/by-name/nova",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(lookup, timeout=30) as answer:
            return strict(answer.read().decode())["id"]

    request = urllib.request.Request(
        f"{server.http}/api/instances/{await asyncio.to_thread(instance_id)}/chat",
        data=b'{"text": "hola \\ud83d"}',
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/octet-stream",
            "Accept": "text/event-stream",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
    assert refused.value.code == 422
    assert strict(refused.value.read().decode())["errors"][0]["field"] == "text"
