"""realtime.channel_layer over real Redis: idle receives past redis-py's timeouts, explicit
timeouts, and a Redis restart (a private redis-server on a free port)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime.channel_layer import ResilientRedisChannelLayer
from tests.redis_server import PrivateRedis
from tests.servers import free_port

pytestmark = pytest.mark.redis

SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def layer_for(url: str, **host) -> ResilientRedisChannelLayer:
    return ResilientRedisChannelLayer(
        hosts=[{"address": url, **host}], prefix=f"voztest{uuid.uuid4().hex[:10]}"
    )


def test_a_timeout_that_races_the_blocking_receive_is_refused():
    with pytest.raises(ImproperlyConfigured, match="socket_timeout 5"):
        layer_for(SHARED_REDIS_URL, socket_timeout=5)


def test_hosts_without_timeouts_get_explicit_ones():
    layer = ResilientRedisChannelLayer(hosts=[SHARED_REDIS_URL])
    assert layer.hosts[0]["socket_timeout"] > layer.brpop_timeout + 1
    assert layer.hosts[0]["socket_connect_timeout"] == 5.0


async def test_an_idle_receive_outlives_every_socket_timeout():
    layer = layer_for(SHARED_REDIS_URL, socket_timeout=7)
    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(16)  # Three blocking receives of 5 s; two socket timeouts of 7 s.
    assert not waiting.done(), waiting
    await layer.send(channel, {"type": "hello.there", "n": 1})
    assert await asyncio.wait_for(waiting, 10) == {"type": "hello.there", "n": 1}
    await layer.flush()


async def test_group_send_to_an_unreachable_redis_returns_quickly():
    layer = layer_for(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    for _ in range(50):
        await layer.group_send("voz.observe.x", {"type": "observe.event", "event": {}})
    assert time.monotonic() - started < 5
    assert not layer.available


async def test_receive_waits_through_a_restart_and_keeps_its_groups(tmp_path):
    redis = PrivateRedis(tmp_path).start()
    try:
        listener, sender = layer_for(redis.url), layer_for(redis.url)
        sender.prefix = listener.prefix
        channel = await listener.new_channel()
        await listener.group_add("watchers", channel)
        waiting = asyncio.create_task(listener.receive(channel))
        await asyncio.sleep(1)
        redis.stop()
        await asyncio.sleep(3)
        assert not waiting.done(), waiting  # Retrying, not raising.
        assert not listener.available
        redis.start()  # Without persistence: the group is gone from Redis.
        deadline = time.monotonic() + 30
        while not listener.available:
            assert time.monotonic() < deadline, "the layer never reached Redis again"
            await asyncio.sleep(0.2)
        await sender.group_send("watchers", {"type": "back.again"})
        assert await asyncio.wait_for(waiting, 15) == {"type": "back.again"}
        await listener.group_discard("watchers", channel)
        await listener.flush()
    finally:
        redis.stop()


async def test_a_channel_of_another_prefix_receives_while_consumers_wait():
    """/readyz's channel must not wait behind the receive loop that idle consumers hold."""
    layer = layer_for(SHARED_REDIS_URL)
    consumer = await layer.new_channel()
    idle = asyncio.create_task(layer.receive(consumer))
    await asyncio.sleep(0.5)
    probe = await layer.new_channel("readyz.")
    await layer.send(probe, {"type": "readyz.ping"})
    assert await asyncio.wait_for(layer.receive(probe), 10) == {"type": "readyz.ping"}
    assert not idle.done()
    idle.cancel()
    await layer.flush()
