"""Limits per user, not per socket (issue 21, item 7): one turn budget (WS_TURNS_PER_MINUTE) for
every door and socket, and at most WS_MAX_SESSIONS_PER_USER voice sessions open, across
reconnects and, over Redis, across server processes.

The issue's examples: 60 answered turns in 21 s with three reconnects (20 a minute per socket),
and one token holding 40 sessions at once."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts import usage
from characters.models import Message
from tests.fake_openai import FakeOpenAI, Reply
from tests.servers import fake_model_env, prepare_database, start_daphne
from tests.voice_helpers import connect, events_until, next_event, send, start_session

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# The stores ------------------------------------------------------------------------------------


async def test_memory_turn_budget_is_a_sliding_minute():
    clock = Clock()
    counts = usage.MemoryCounts(clock=clock)
    assert await counts.turn_take("u", 2) is None and await counts.turn_take("u", 2) is None
    assert await counts.turn_take("u", 2) == pytest.approx(60.0)
    assert await counts.turn_take("other", 2) is None  # Another user's budget is their own.
    clock.now += 59.9
    assert await counts.turn_take("u", 2) == pytest.approx(0.1)
    clock.now += 0.2
    assert await counts.turn_take("u", 2) is None


async def test_memory_leases_expire_unless_renewed():
    clock = Clock()
    counts = usage.MemoryCounts(clock=clock)
    assert await counts.lease_take("u", "a", 1, ttl=10)
    assert not await counts.lease_take("u", "b", 1, ttl=10)
    clock.now += 9
    assert await counts.lease_take("u", "a", 1, ttl=10)  # Renewed: a held lease always is.
    clock.now += 9
    assert not await counts.lease_take("u", "b", 1, ttl=10)
    clock.now += 2  # "a" stopped renewing (its process crashed): its place is free.
    assert await counts.lease_take("u", "b", 1, ttl=10)
    await counts.lease_release("u", "b")
    assert await counts.lease_take("u", "c", 1, ttl=10)


@pytest.mark.redis
async def test_redis_counts_are_shared_by_processes():
    """Two stores on one Redis (as two server processes have) share one budget and one set of
    leases, timed by Redis' clock."""
    key = f"voztest{uuid.uuid4().hex[:10]}"
    first, second = usage.RedisCounts(REDIS_URL), usage.RedisCounts(REDIS_URL)
    assert await first.turn_take(f"{key}:turns", 2) is None
    assert await second.turn_take(f"{key}:turns", 2) is None
    wait = await first.turn_take(f"{key}:turns", 2)
    assert wait is not None and 59 < wait <= 60
    assert await first.lease_take(f"{key}:sessions", "a", 1, ttl=0.5)
    assert not await second.lease_take(f"{key}:sessions", "b", 1, ttl=0.5)
    await asyncio.sleep(0.6)  # "a" was never renewed: its process is gone.
    assert await second.lease_take(f"{key}:sessions", "b", 1, ttl=0.5)
    await second.lease_release(f"{key}:sessions", "b")
    assert await first.lease_take(f"{key}:sessions", "c", 1, ttl=0.5)


# One process: sockets, reconnects and HTTP chat ----------------------------------------------


@pytest.fixture
def limits(settings):
    settings.TTS_ENGINES = ["espeak"]
    settings.MEMORY_CONSOLIDATION = False
    settings.WS_TURNS_PER_MINUTE = 3
    settings.WS_MAX_SESSIONS_PER_USER = 2
    return settings


@pytest.fixture
def vega(other_user, make_instance):
    """Bob's instance."""
    return make_instance(other_user, "vega")


async def typed(ws, text: str) -> list[dict]:
    await send(ws, {"type": "input_text", "text": text})
    return await events_until(ws, "response.done")


async def refused_turn(ws, text: str) -> dict:
    await send(ws, {"type": "input_text", "text": text})
    events = await events_until(ws, "error")
    assert not [e for e in events if e["type"] == "transcript.final"], events
    return events[-1]


def chat(token: str, instance, text: str, **headers):
    return AsyncClient().post(
        f"/api/instances/{instance.id}/chat",
        json.dumps({"text": text}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )


@pytest.mark.django_db(transaction=True)
async def test_reconnecting_does_not_reset_the_turn_budget(limits, fake_openai, token, nova):
    fake_openai.default_reply = Reply("Fine.")
    for texts in (["one", "two"], ["three"]):
        ws = await connect(token)
        await start_session(ws, "nova", output_audio={"format": "none"})
        for text in texts:
            assert (await typed(ws, text))[-1]["text"] == "Fine."
        await ws.disconnect()
    ws = await connect(token)
    await start_session(ws, "nova", output_audio={"format": "none"})
    refusal = await refused_turn(ws, "four")
    assert refusal["code"] == "rate_limited" and not refusal["fatal"]
    assert 0 < refusal["retry_after"] <= 60 and "3 turns in a minute" in refusal["message"]
    await ws.disconnect()
    assert await Message.objects.filter(role="user").acount() == 3


@pytest.mark.django_db(transaction=True)
async def test_http_chat_and_voice_share_one_budget(
    limits, fake_openai, token, other_token, nova, vega
):
    fake_openai.default_reply = Reply("Fine.")
    ws = await connect(token)
    await start_session(ws, "nova", output_audio={"format": "none"})
    await typed(ws, "one")
    assert (await chat(token, nova, "two")).status_code == 200
    await typed(ws, "three")
    refused = await chat(token, nova, "four")
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "rate_limited" and body["retry_after"] == int(refused["Retry-After"])
    stream = await chat(token, nova, "four", Accept="text/event-stream")
    assert stream.status_code == 429 and int(stream["Retry-After"]) > 0
    assert (await refused_turn(ws, "five"))["code"] == "rate_limited"
    await ws.disconnect()
    assert await Message.objects.filter(role="user").acount() == 3
    # Another user's budget is untouched.
    other = await connect(other_token)
    await start_session(other, "vega", output_audio={"format": "none"})
    assert (await typed(other, "hi"))[-1]["text"] == "Fine."
    await other.disconnect()


async def session_refusal(ws) -> tuple[dict, int]:
    event = await next_event(ws)
    closed = await next_event(ws)
    assert closed["type"] == "<close>"
    return event, closed["code"]


@pytest.mark.django_db(transaction=True)
async def test_one_session_more_than_allowed_is_refused_and_a_close_frees_a_place(
    limits, token, other_token, user, make_token
):
    user_token = await sync_to_async(make_token)(user)  # Per user, not per token.
    first, second = await connect(token), await connect(user_token)
    third = await connect(token)
    event, code = await session_refusal(third)
    assert (code, event["code"], event["fatal"]) == (4409, "too_many_sessions", True)
    other = await connect(other_token)  # Another user has places of their own.
    await send(other, {"type": "ping", "id": 1})
    assert (await next_event(other))["type"] == "pong"
    await first.disconnect()
    await asyncio.sleep(0.05)
    fourth = await connect(user_token)
    await send(fourth, {"type": "ping", "id": 2})
    assert (await next_event(fourth))["type"] == "pong"
    for ws in (second, fourth, other):
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_lease_its_process_stopped_renewing_expires(limits, token, user):
    limits.WS_MAX_SESSIONS_PER_USER = 1
    limits.SESSION_LEASE_SECONDS = 0.6
    crashed = usage.SessionLease(user)
    assert await crashed.take()
    crashed._renewer.cancel()  # Its process died: nothing renews the lease, nothing releases it.
    event, code = await session_refusal(await connect(token))
    assert (code, event["code"]) == (4409, "too_many_sessions")
    await asyncio.sleep(0.7)
    ws = await connect(token)
    await send(ws, {"type": "ping", "id": 1})
    assert (await next_event(ws))["type"] == "pong"
    await asyncio.sleep(0.7)  # Longer than the lease: a live session keeps renewing its own.
    event, code = await session_refusal(await connect(token))
    assert code == 4409
    await ws.disconnect()


# Two server processes over one Redis ------------------------------------------------------------


async def recv_event(ws, kind: str, limit_s: float = 30) -> dict:
    while True:
        frame = await asyncio.wait_for(ws.recv(), limit_s)
        if isinstance(frame, str) and (event := json.loads(frame))["type"] in (kind, "error"):
            return event


async def voice(url: str, token: str):
    ws = await websockets.connect(f"{url}/ws/voice/", subprotocols=["voz.v1", f"bearer.{token}"])
    await ws.send(
        json.dumps(
            {"type": "session.start", "instance": "nova", "output_audio": {"format": "none"}}
        )
    )
    return ws


def http_chat(url: str, token: str, instance_id: str) -> tuple[int, dict, str | None]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{url}/api/instances/{instance_id}/chat",
        data=json.dumps({"text": "And over HTTP?"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer), None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get("Retry-After")


def instance_id(url: str, token: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/api/instances/by-name/nova", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["id"]


@pytest.mark.redis
def test_two_daphne_processes_share_the_budget_and_the_sessions_over_redis(tmp_path):
    model = FakeOpenAI().start()
    model.default_reply = Reply("Shared.")
    env = fake_model_env(
        tmp_path,
        model,
        REDIS_URL=REDIS_URL,
        REDIS_PREFIX=f"voztest{uuid.uuid4().hex[:10]}",
        TTS_ENGINES="espeak",
        WARM_UP="false",
        WS_TURNS_PER_MINUTE="2",
        WS_MAX_SESSIONS_PER_USER="1",
    )
    token = prepare_database(env)["token"]
    first, second = start_daphne(env), start_daphne(env)

    async def scenario() -> None:
        held = await voice(first.ws, token)
        assert (await recv_event(held, "session.started"))["type"] == "session.started"
        refused = await websockets.connect(
            f"{second.ws}/ws/voice/", subprotocols=["voz.v1", f"bearer.{token}"]
        )
        event = json.loads(await asyncio.wait_for(refused.recv(), 10))
        assert event["code"] == "too_many_sessions"
        await asyncio.wait_for(refused.wait_closed(), 10)
        assert refused.close_code == 4409  # Over a real daphne, the close reaches the client.
        await held.send(json.dumps({"type": "input_text", "text": "One."}))
        assert (await recv_event(held, "response.done"))["text"] == "Shared."
        await held.close()  # Frees the place; the turn stays counted.
        await asyncio.sleep(0.3)
        moved = await voice(second.ws, token)
        assert (await recv_event(moved, "session.started"))["type"] == "session.started"
        await moved.send(json.dumps({"type": "input_text", "text": "Two."}))
        assert (await recv_event(moved, "response.done"))["text"] == "Shared."
        await moved.send(json.dumps({"type": "input_text", "text": "Three."}))
        refusal = await recv_event(moved, "response.done")
        assert refusal["code"] == "rate_limited" and refusal["retry_after"] > 0
        await moved.close()
        status, body, retry_after = await asyncio.to_thread(
            http_chat, first.http, token, await asyncio.to_thread(instance_id, first.http, token)
        )
        assert (status, body["code"]) == (429, "rate_limited") and int(retry_after) > 0

    try:
        asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()
        model.stop()
    for server in (first, second):
        assert "Traceback" not in server.output(), server.output()[-3000:]


@pytest.mark.django_db(transaction=True)
async def test_observers_have_their_own_places(limits, token, nova):
    """Observe sockets are limited the same way, counted apart from voice sessions."""
    voices = [await connect(token), await connect(token)]  # Both voice places taken.
    observers = [await connect(token, "/ws/observe/nova/") for _ in range(2)]
    for ws in observers:
        assert (await next_event(ws))["type"] == "observe.started"
    event, code = await session_refusal(await connect(token, "/ws/observe/nova/"))
    assert (code, event["code"]) == (4409, "too_many_sessions")
    await observers[0].disconnect()
    await asyncio.sleep(0.05)
    again = await connect(token, "/ws/observe/nova/")
    assert (await next_event(again))["type"] == "observe.started"
    for ws in [*voices, observers[1], again]:
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_ping_sockets_have_their_own_places(limits, token, nova):
    """/ws/ping/ was not limited at all: one token held 60 of them (each re-checks its
    credentials every few seconds). Now as many as voice sessions, counted apart."""
    voices = [await connect(token), await connect(token)]  # Both voice places taken.
    pings = [await connect(token, "/ws/ping/") for _ in range(2)]
    for ws in pings:
        assert (await next_event(ws))["type"] == "hello"
    event, code = await session_refusal(await connect(token, "/ws/ping/"))
    assert (code, event["code"]) == (4409, "too_many_sessions")
    await pings[0].disconnect()
    await asyncio.sleep(0.05)
    again = await connect(token, "/ws/ping/")
    assert (await next_event(again))["type"] == "hello"
    for ws in [*voices, pings[1], again]:
        await ws.disconnect()
