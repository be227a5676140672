"""A turn publishes its own observer events (issue 10, Zulip's actions), whatever its door, and
the idle sweeper starts from the app's lifecycle, not from a reply."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.management import call_command
from django.test import AsyncClient

from conversation import background
from conversation.observe import group_for
from conversation.turns import reply_turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def instance(user, make_instance):
    return make_instance(user, name="Luna")


async def listen(instance) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_for(instance.pk), channel)
    return channel


async def events_until_done(channel: str) -> list[dict]:
    layer = get_channel_layer()
    events = []
    while not events or events[-1]["type"] != "response.done":
        events.append((await asyncio.wait_for(layer.receive(channel), 10))["event"])
    return events


async def test_an_http_turn_is_seen_by_observers(fake_openai, token, instance):
    channel = await listen(instance)
    fake_openai.script("Ahoy there.")
    response = await AsyncClient().post(
        f"/api/instances/{instance.id}/chat",
        {"text": "Hello"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    events = await events_until_done(channel)
    assert [e["type"] for e in events] == [
        "transcript.final",
        "response.started",
        "response.text.delta",
        "response.text.delta",
        "response.done",
    ]
    assert events[0] == {
        "type": "transcript.final",
        "text": "Hello",
        "message_id": body["user_message_id"],
        "conversation_id": body["conversation_id"],
        "session_id": None,
        "channel": "api",
    }
    response_id = events[1]["response_id"]
    assert "".join(e["delta"] for e in events[2:4]) == "Ahoy there."
    assert all(e["response_id"] == response_id for e in events[1:])
    assert events[-1] == {
        "type": "response.done",
        "response_id": response_id,
        "text": "Ahoy there.",
        "interrupted": False,
        "message_id": body["message_id"],
        "conversation_id": body["conversation_id"],
        "session_id": None,
        "channel": "api",
    }


async def test_an_sse_turn_cut_by_the_model_reports_its_error(fake_openai, token, instance):
    channel = await listen(instance)
    fake_openai.fail(401)
    response = await AsyncClient().post(
        f"/api/instances/{instance.id}/chat?stream=1",
        {"text": "Hello"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    async for _ in response.streaming_content:
        pass
    done = (await events_until_done(channel))[-1]
    assert done["error"].startswith("llm_auth: ") and done["interrupted"] is False


async def test_voice_ids_and_opting_out(fake_openai, user, instance):
    channel = await listen(instance)
    async with reply_turn(
        instance=instance, user=user, text="Hi", channel="ws", session_id="s1", response_id="r1"
    ) as turn:
        async for _ in turn.deltas():
            pass
    events = await events_until_done(channel)
    assert {(e["session_id"], e["channel"]) for e in events} == {("s1", "ws")}
    assert events[-1]["response_id"] == "r1"
    async with reply_turn(instance=instance, user=user, text="Hi", observe=False) as quiet:
        async for _ in quiet.deltas():
            pass
    layer = get_channel_layer()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.3)


def test_a_chat_command_turn_is_seen_by_observers(fake_openai, user, instance, monkeypatch):
    layer = get_channel_layer()
    channel = async_to_sync(listen)(instance)
    fake_openai.script("From the terminal.")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi from the CLI\n"))
    call_command("chat", "Luna", "--no-consolidate", stdout=io.StringIO(), stderr=io.StringIO())

    async def drain() -> list[dict]:
        events = []
        while True:
            try:
                events.append((await asyncio.wait_for(layer.receive(channel), 0.5))["event"])
            except TimeoutError:
                return events

    events = async_to_sync(drain)()
    assert events[0]["type"] == "transcript.final" and events[0]["text"] == "Hi from the CLI"
    assert events[-1]["type"] == "response.done" and events[-1]["channel"] == "cli"
    assert events[-1]["text"] == "From the terminal."


async def test_the_sweeper_starts_with_the_asgi_lifespan_not_with_a_reply(
    fake_openai, user, instance, settings
):
    settings.MEMORY_SWEEP_SECONDS = 3600
    background.sweeper_stop()
    # A reply does not start it.
    async with reply_turn(instance=instance, user=user, text="Hi") as turn:
        async for _ in turn.deltas():
            pass
    loop = asyncio.get_running_loop()
    assert loop not in background._sweepers
    # The server's lifespan startup does; shutdown stops it.
    from realtime.asgi import application

    sent: list[dict] = []
    running_between: list[bool] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict:
        if sent:  # Startup answered: is the sweeper running now?
            task = background._sweepers.get(loop)
            running_between.append(task is not None and not task.done())
        return next(incoming)

    async def send(message: dict) -> None:
        sent.append(message)

    await application({"type": "lifespan"}, receive, send)
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert running_between == [True]
    assert loop not in background._sweepers  # Stopped on shutdown.
    # Servers without lifespan (daphne): the first connection starts it, once per loop.
    seen: list[str] = []

    async def inner(scope, receive, send) -> None:
        seen.append(scope["type"])

    wrapped = background.lifespan_sweeper(inner)
    await wrapped({"type": "http"}, None, None)
    first = background._sweepers[loop]
    await wrapped({"type": "websocket"}, None, None)
    assert seen == ["http", "websocket"] and background._sweepers[loop] is first
    background.sweeper_stop()
    await asyncio.sleep(0)
    assert first.cancelled()


class HangingLayer(InMemoryChannelLayer):
    """A channel layer whose group sends never return (a Redis that accepts and never answers)."""

    async def group_send(self, group, message):
        await asyncio.Event().wait()


async def test_a_hanging_channel_layer_neither_delays_nor_fails_a_turn(
    fake_openai, user, instance, settings, caplog, monkeypatch
):
    from channels.layers import channel_layers

    from conversation import observe

    monkeypatch.setattr(observe, "PUBLISH_SECONDS", 6.0)
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.conversation.test_turn_events.HangingLayer"}
    }
    channel_layers.backends.clear()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with reply_turn(instance=instance, user=user, text="Hi") as turn:
            async for _ in turn.deltas():
                pass
        assert loop.time() - started < 5.0  # Not held until the publish bound gives up.
        assert turn.error is None and turn.reply_message_id is not None
        with caplog.at_level(logging.WARNING, logger="conversation.observe"):
            await background.wait_background()
    finally:
        channel_layers.backends.clear()
    [warning] = [r for r in caplog.records if r.name == "conversation.observe"]
    assert "Observer events dropped" in warning.getMessage()
