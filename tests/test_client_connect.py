"""The reference voice client as a first-time user meets it: it finds the server ./scripts/serve
started, and says in one line (no traceback) when it cannot reach one or gets no answer."""

from __future__ import annotations

import asyncio
import json
import sys
import wave

import websockets

from clients import voice_client
from tests.servers import ROOT
from tests.speech_samples import closed_port


async def run_client(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.voice_client",
        "--token",
        "voz_test",
        "--instance",
        "nova",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_no_server_is_one_clear_line(tmp_path):
    url = f"ws://127.0.0.1:{closed_port()}/ws/voice/"
    code, _, err = await run_client("--url", url, "--text", "hi", "--out", str(tmp_path))
    assert code == 2
    assert f"cannot talk to {url}" in err and "Is the server running?" in err
    assert "Traceback" not in err


async def test_a_server_that_never_answers_is_given_up(tmp_path):
    async def silent(ws):
        await asyncio.sleep(30)

    async with websockets.serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        code, _, err = await run_client(
            "--url", url, "--text", "hi", "--timeout", "1", "--out", str(tmp_path)
        )
    assert code == 1
    assert "no answer for 1 s" in err and "Traceback" not in err


async def test_a_turn_that_fails_ends_the_session(tmp_path):
    """stt_failed after the commit: no reply will come, so the client ends instead of waiting."""
    received = []

    async def failing(ws):
        async for message in ws:
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            received.append(event["type"])
            if event["type"] == "session.start":
                await ws.send(json.dumps({"type": "session.started", "session_id": "s"}))
            elif event["type"] == "input_audio.commit":
                error = {"type": "error", "code": "stt_failed", "message": "x", "fatal": False}
                await ws.send(json.dumps(error))
            elif event["type"] == "session.end":
                await ws.send(json.dumps({"type": "session.ended", "conversation_id": None}))
                await ws.close()

    speech = tmp_path / "speech.wav"
    with wave.open(str(speech), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\x00\x00" * 1600)
    async with websockets.serve(failing, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code, out, _ = await run_client(
            "--url", f"ws://127.0.0.1:{port}/", str(speech), "--out", str(tmp_path / "out")
        )
    assert code == 1
    assert received[-2:] == ["input_audio.commit", "session.end"]
    assert '"code": "stt_failed"' in out


def test_default_url_is_the_one_serve_wrote(tmp_path, monkeypatch):
    monkeypatch.delenv("VOZ_WS_URL", raising=False)
    monkeypatch.setenv("VOZ_DATA_DIR", str(tmp_path))
    assert voice_client.default_url() == voice_client.DEFAULT_URL  # nothing served yet
    (tmp_path / "serve.env").write_text(
        "# Written by ./scripts/serve\nVOZ_URL=http://127.0.0.1:8123\n"
        "VOZ_WS_URL=ws://127.0.0.1:8123/ws/voice/\nT=voz_x\n"
    )
    assert voice_client.default_url() == "ws://127.0.0.1:8123/ws/voice/"
    monkeypatch.setenv("VOZ_WS_URL", "ws://example.test/ws/voice/")
    assert voice_client.default_url() == "ws://example.test/ws/voice/"


async def test_no_recogniser_at_the_start_does_not_end_a_typed_turn(tmp_path):
    """stt_failed before the typed turn (no recogniser for the language) is no reason to stop."""

    async def typed(ws):
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "session.start":
                error = {"type": "error", "code": "stt_failed", "message": "x", "fatal": False}
                await ws.send(json.dumps(error))
                await ws.send(json.dumps({"type": "session.started", "session_id": "s"}))
            elif event["type"] == "input_text":
                await ws.send(json.dumps({"type": "metrics", "response_id": "r"}))
            elif event["type"] == "session.end":
                await ws.send(json.dumps({"type": "session.ended", "conversation_id": None}))
                await ws.close()

    async with websockets.serve(typed, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code, out, _ = await run_client(
            "--url", f"ws://127.0.0.1:{port}/", "--text", "hola", "--out", str(tmp_path)
        )
    assert code == 0, out
    assert '"type": "metrics"' in out


async def _client_against(handler, tmp_path, *args: str) -> tuple[int, str, str, int]:
    """Run the client (a typed turn) against a `websockets` server with `handler(ws, n)`, n the
    connection's number from 1; returns (exit status, stdout, stderr, connections made)."""
    connections = 0

    async def serve(ws):
        nonlocal connections
        connections += 1
        await handler(ws, connections)

    async with websockets.serve(serve, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code, out, err = await run_client(
            "--url", f"ws://127.0.0.1:{port}/", "--text", "hi", "--out", str(tmp_path), *args
        )
    return code, out, err, connections


async def _answer_a_turn(ws) -> None:
    async for message in ws:
        kind = json.loads(message)["type"]
        if kind == "session.start":
            await ws.send(json.dumps({"type": "session.started", "session_id": "s"}))
        elif kind == "input_text":
            await ws.send(json.dumps({"type": "metrics", "response_id": "r"}))
        elif kind == "session.end":
            await ws.send(json.dumps({"type": "session.ended", "conversation_id": None}))
            await ws.close()


def _fatal(code: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": "x", "fatal": True})


async def test_a_close_that_says_retry_is_retried_on_a_new_connection(tmp_path):
    async def unavailable_once(ws, number):
        if number == 1:
            await ws.recv()
            await ws.send(_fatal("unavailable"))
            await ws.close(4503)
            return
        await _answer_a_turn(ws)

    code, _, err, connections = await _client_against(unavailable_once, tmp_path)
    assert (code, connections) == (0, 2)
    assert "closed the connection with 4503 (unavailable: x); retrying in" in err


async def test_a_close_that_says_stop_is_not_retried(tmp_path):
    async def not_found(ws, number):
        await ws.recv()
        await ws.send(_fatal("not_found"))
        await ws.close(4404)

    code, _, err, connections = await _client_against(not_found, tmp_path)
    assert (code, connections) == (2, 1)
    assert "not found (close code 4404) (not_found: x)" in err and "Traceback" not in err


async def test_retries_end(tmp_path):
    async def failing(ws, number):
        await ws.recv()
        await ws.close(4500)

    code, _, err, connections = await _client_against(failing, tmp_path, "--retries", "1")
    assert (code, connections) == (2, 2)
    assert "gave up after 1 retries" in err
