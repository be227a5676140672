"""WebSockets over the Redis channel layer in a real daphne, for longer than any client timeout,
and through a Redis restart (a private redis-server; the shared one is never touched).

redis-py 8 gave every socket a 5 s read timeout, which cut the layer's 5 s blocking receive and
closed every idle socket with 1011 within ~6 s (docs/operations.md). These tests hold ping, voice
and observe sockets idle for 18 s, then use them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest
import websockets

from tests.fake_openai import FakeOpenAI, Reply
from tests.redis_server import PrivateRedis
from tests.servers import Daphne, fake_model_env, prepare_database, start_daphne

pytestmark = pytest.mark.redis

SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "Still here. The layer held."
IDLE_S = 18.0  # Longer than redis-py's 5 s default, the layer's 5 s BZPOPMIN and both together.
FAILURE_MARKS = ("Exception inside application", "Traceback", "Timeout reading from")


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeOpenAI().start()
    server.default_reply = Reply(REPLY)
    yield server
    server.stop()


def serve(tmp_path, fake_llm, redis_url: str) -> tuple[Daphne, str]:
    env = fake_model_env(
        tmp_path,
        fake_llm,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"voztest{uuid.uuid4().hex[:10]}",  # Never collide with other runs.
        TTS_ENGINES="espeak",  # The cheapest synthesis: these tests are about the layer.
    )
    token = prepare_database(env)["token"]
    return start_daphne(env), token


def readyz(server: Daphne) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{server.http}/readyz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


async def areadyz(server: Daphne) -> tuple[int, str]:
    return await asyncio.to_thread(readyz, server)


async def wait_readyz(server: Daphne, status: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while (seen := await areadyz(server))[0] != status:
        assert time.monotonic() < deadline, f"/readyz stayed {seen}, wanted {status}"
        await asyncio.sleep(0.5)


async def recv_json(ws, limit_s: float = 30) -> dict:
    while True:
        frame = await asyncio.wait_for(ws.recv(), limit_s)
        if isinstance(frame, str):
            return json.loads(frame)


async def until(ws, kind: str, limit_s: float = 60) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        event = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if event["type"] == kind:
            return event


class Sockets:
    """One ping, one voice (started on nova) and one observe (of nova) socket."""

    def __init__(self, server: Daphne, token: str) -> None:
        self.server, self.token = server, token

    async def __aenter__(self) -> Sockets:
        auth = ["voz.v1", f"bearer.{self.token}"]
        self.ping = await websockets.connect(f"{self.server.ws}/ws/ping/", subprotocols=auth)
        assert (await recv_json(self.ping))["type"] == "hello"
        self.observe = await websockets.connect(
            f"{self.server.ws}/ws/observe/nova/", subprotocols=auth
        )
        assert (await recv_json(self.observe))["type"] == "observe.started"
        self.voice = await websockets.connect(
            f"{self.server.ws}/ws/voice/", subprotocols=auth, max_size=2**24
        )
        await self.voice.send(json.dumps({"type": "session.start", "instance": "nova"}))
        self.session = await until(self.voice, "session.started")
        return self

    async def __aexit__(self, *exc) -> None:
        for ws in (self.ping, self.observe, self.voice):
            await ws.close()

    async def all_answer_ping(self) -> None:
        for ws in (self.ping, self.observe, self.voice):
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            assert (await until(ws, "pong", 20)).get("type") == "pong"

    async def typed_turn(self, text: str) -> dict:
        await self.voice.send(json.dumps({"type": "input_text", "text": text}))
        return await until(self.voice, "response.done", 60)


async def hold_idle_then_use(server: Daphne, token: str) -> None:
    async with Sockets(server, token) as sockets:
        started = time.monotonic()
        while time.monotonic() - started < IDLE_S:
            status, body = await areadyz(server)
            assert status == 200, body
            await asyncio.sleep(3)
        for ws in (sockets.ping, sockets.observe, sockets.voice):
            assert ws.close_code is None, (ws.close_code, server.output()[-3000:])
        await sockets.all_answer_ping()
        done = await sockets.typed_turn("Are you still there?")
        assert done["text"] == REPLY and not done["interrupted"]
        observed = await until(sockets.observe, "response.done", 30)
        assert observed["session_id"] == sockets.session["session_id"]
        assert observed["text"] == REPLY


def test_sockets_stay_open_over_redis_past_every_timeout(tmp_path, fake_llm):
    server, token = serve(tmp_path, fake_llm, SHARED_REDIS_URL)
    try:
        asyncio.run(hold_idle_then_use(server, token))
        log = server.output()
        assert not any(mark in log for mark in FAILURE_MARKS), log[-3000:]
    finally:
        server.stop()


async def live_through_a_restart(server: Daphne, token: str, redis: PrivateRedis) -> None:
    async with Sockets(server, token) as sockets:
        assert (await areadyz(server))[0] == 200
        redis.stop()
        await wait_readyz(server, 503, 20)
        # Redis is down: the voice session does not use the layer for itself and goes on.
        await sockets.all_answer_ping()
        done = await sockets.typed_turn("Redis is down, can you hear me?")
        assert done["text"] == REPLY and not done["interrupted"] and done["message_id"]
        await asyncio.sleep(2)  # The observer's receive retries meanwhile.
        redis.start()
        await wait_readyz(server, 200, 30)
        # The restarted Redis forgot every group; the layer re-adds the observer's membership.
        deadline = time.monotonic() + 40
        while True:
            done = await sockets.typed_turn("And now?")
            assert done["text"] == REPLY
            try:
                observed = await until(sockets.observe, "response.done", 8)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the observer never heard a turn again"
        assert observed["session_id"] == sockets.session["session_id"]
        for ws in (sockets.ping, sockets.observe, sockets.voice):
            assert ws.close_code is None
        await sockets.all_answer_ping()


def test_sessions_live_through_a_redis_restart(tmp_path, fake_llm):
    redis = PrivateRedis(tmp_path).start()
    server, token = serve(tmp_path, fake_llm, redis.url)
    try:
        asyncio.run(live_through_a_restart(server, token, redis))
        log = server.output()
        assert not any(mark in log for mark in FAILURE_MARKS), log[-3000:]
        assert "Channel layer lost Redis" in log and "Channel layer reached Redis again" in log
    finally:
        server.stop()
        redis.stop()
