"""Slow and silent HTTP connections end (issue 21 item 10; realtime/request_deadline.py), over a
real daphne: a request's head must arrive within HTTP_REQUEST_TIMEOUT_SECONDS (here 2 s), its
body within that plus 1 s per HTTP_REQUEST_MIN_RATE bytes (here 500), an idle keep-alive
connection closes after it, and hundreds of such connections do not keep a request waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

import pytest
import websockets

from tests.servers import prepare_database, server_env, start_daphne

BOUND_S = 2.0
SLACK_S = 1.5  # Scheduling on a loaded 2-core machine.
BODY_BYTES = 100_000  # HTTP_MAX_BODY_BYTES and STT_MAX_UPLOAD_BYTES here.
BODY_LIMIT = BODY_BYTES + 1024 * 1024  # What the channel takes (multipart slack included).


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    env = server_env(
        tmp_path_factory.mktemp("deadline"),
        HTTP_REQUEST_TIMEOUT_SECONDS=str(BOUND_S),
        HTTP_REQUEST_MIN_RATE="500",
        HTTP_MAX_BODY_BYTES=str(BODY_BYTES),
        STT_MAX_UPLOAD_BYTES=str(BODY_BYTES),
        WARM_UP="false",
    )
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"]
    finally:
        server.stop()


async def _open(server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _until_closed(reader: asyncio.StreamReader, limit_s: float = 30) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and when (s from now)."""
    started, received = time.monotonic(), b""
    while chunk := await asyncio.wait_for(reader.read(65536), limit_s):
        received += chunk
    return received, time.monotonic() - started


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_half_a_request_is_answered_408_and_closed_after_the_bound(served):
    server, _ = served
    reader, writer = await _open(server)
    writer.write(b"GET /api/characters HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # No blank line.
    answer, took = await _until_closed(reader)
    assert _status(answer) == 408
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"
    assert BOUND_S - 0.2 <= took <= BOUND_S + SLACK_S, took
    writer.close()


async def test_a_silent_connection_is_closed_without_an_answer(served):
    server, _ = served
    reader, writer = await _open(server)
    answer, took = await _until_closed(reader)
    assert answer == b""
    assert took <= BOUND_S + SLACK_S, took
    writer.close()


async def test_header_bytes_trickling_in_do_not_extend_the_bound(served):
    server, _ = served
    reader, writer = await _open(server)
    writer.write(b"GET / HTTP/1.1\r\n")

    async def trickle() -> None:
        for n in range(100):
            writer.write(b"X-Slow-%d: a\r\n" % n)
            await asyncio.sleep(0.25)

    sending = asyncio.create_task(trickle())
    answer, took = await _until_closed(reader)
    sending.cancel()
    assert _status(answer) == 408
    assert took <= BOUND_S + SLACK_S, took
    writer.close()


async def test_a_body_trickling_below_the_minimum_rate_is_cut(served):
    server, _ = served
    reader, writer = await _open(server)
    writer.write(
        b"POST /api/characters HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )

    async def trickle() -> None:
        for _ in range(1000):
            writer.write(b" " * 20)  # 80 bytes a second, under 500.
            await asyncio.sleep(0.25)

    sending = asyncio.create_task(trickle())
    answer, took = await _until_closed(reader)
    sending.cancel()
    assert _status(answer) == 408
    assert took <= BOUND_S + 0.2 + SLACK_S, took  # 2 s, plus 1 s per 500 bytes (~0.2 s).
    writer.close()


async def test_a_slow_upload_that_keeps_the_rate_is_not_cut(served):
    server, token = served
    reader, writer = await _open(server)
    body = json.dumps(
        {"name": "Slow Upload", "language": "en", "description": "a" * 7_000}
    ).encode()
    writer.write(
        b"POST /api/characters HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (token.encode(), len(body))
    )
    started = time.monotonic()
    for position in range(0, len(body), 400):  # 1,600 bytes a second for ~4.5 s.
        writer.write(body[position : position + 400])
        await asyncio.sleep(0.25)
    answer, _ = await _until_closed(reader)
    took = time.monotonic() - started
    assert took > 2 * BOUND_S, "the upload outlasted the bound"
    assert _status(answer) == 201, answer[:300]  # The whole body arrived and was stored.
    writer.close()


async def test_a_body_larger_than_any_door_takes_is_refused_before_it_is_received(served):
    """A 300 MB Content-Length was received whole and handed to Django in memory (+290 MB
    peak) before its 413; now the head alone is answered 413, and nothing more is read."""
    server, token = served
    reader, writer = await _open(server)
    writer.write(
        b"POST /api/stt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: audio/wav\r\nExpect: 100-continue\r\nContent-Length: 300000000\r\n\r\n"
        % token.encode()
    )
    answer, took = await _until_closed(reader)
    assert _status(answer) == 413, answer[:200]  # Not "100 Continue" first.
    assert "Traceback" not in server.output()
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert error["code"] == "too_large"
    assert str(BODY_LIMIT) in error["detail"]
    assert took < BOUND_S, took  # At once, not after a body that was never sent.
    writer.close()


async def test_a_chunked_body_is_cut_once_it_grows_past_the_limit(served):
    server, token = served
    reader, writer = await _open(server)
    writer.write(
        b"POST /api/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % token.encode()
    )
    # Read while writing, as an HTTP client does: the answer comes while the body is still being
    # sent, and the reset that the next writes meet would otherwise drop it unread.
    received: list[bytes] = []

    async def collect() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.append(chunk)

    collector = asyncio.create_task(collect())
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    try:
        for _ in range(BODY_LIMIT // 0x10000 + 8):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # The server stopped reading and closed: what is tested.
    await asyncio.wait_for(collector, 30)
    answer = b"".join(received)
    assert _status(answer) == 413, answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "too_large"
    writer.close()


async def test_a_body_under_the_limit_still_reaches_the_application(served):
    server, token = served
    reader, writer = await _open(server)
    body = b"\0" * (BODY_BYTES + 10)  # Over STT_MAX_UPLOAD_BYTES, under the channel's limit.
    writer.write(
        b"POST /api/stt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: audio/L16;rate=16000\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body)
    )
    answer, _ = await _until_closed(reader)
    assert _status(answer) == 413, answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "upload_too_large"  # Django's.
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_bound(served):
    server, _ = served
    reader, writer = await _open(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert _status(first) == 200
    answer, took = await _until_closed(reader)
    assert b"408" not in answer  # Nothing of a request arrived: closed silently.
    assert took <= BOUND_S + SLACK_S, took
    writer.close()


async def test_a_websocket_handshake_that_never_finishes_is_closed(served):
    server, _ = served
    reader, writer = await _open(server)
    writer.write(b"GET /ws/ping/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    answer, took = await _until_closed(reader)
    assert _status(answer) == 408
    assert took <= BOUND_S + SLACK_S, took
    writer.close()


async def test_an_open_websocket_outlives_the_bound(served):
    server, token = served
    async with websockets.connect(f"{server.ws}/ws/ping/?token={token}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        await asyncio.sleep(BOUND_S + SLACK_S)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}


async def test_hundreds_of_half_sent_requests_do_not_keep_a_request_waiting(served):
    server, _ = served
    held = []
    for _ in range(300):
        reader, writer = await _open(server)
        writer.write(b"POST /api/characters HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len")
        held.append((reader, writer))
    started = time.monotonic()
    reader, writer = await _open(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer, _ = await _until_closed(reader)
    assert _status(answer) == 200
    assert time.monotonic() - started < 1.5
    writer.close()
    closed = await asyncio.gather(*(_until_closed(r) for r, _ in held))
    assert max(took for _, took in closed) <= BOUND_S + SLACK_S + 1
    assert {_status(answer) for answer, _ in closed} == {408}
    for _, held_writer in held:
        held_writer.close()
    assert "Traceback" not in server.output()


async def test_each_worker_has_the_deadline(tmp_path):
    """`--workers 2` (realtime/workers.py): the workers run realtime.server, bound the same."""
    env = server_env(
        tmp_path,
        HTTP_REQUEST_TIMEOUT_SECONDS=str(BOUND_S),
        WARM_UP="false",
        REDIS_URL=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    prepare_database(env)
    server = start_daphne(env, args=("--workers", "2"))
    try:
        opened = [await _open(server) for _ in range(8)]  # The kernel spreads them over both.
        for _, writer in opened:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = await asyncio.gather(*(_until_closed(reader) for reader, _ in opened))
    finally:
        server.stop()
    assert {_status(answer) for answer, _ in closed} == {408}
    assert max(took for _, took in closed) <= BOUND_S + SLACK_S
