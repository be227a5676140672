"""Sockets' thread-sensitive calls (the ORM) run on a bounded set of threads, one per socket, so
one socket's slow database call does not hold up the others (realtime/sync_threads.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async

from realtime.sync_threads import SyncThreads


def _thread_name() -> str:
    return threading.current_thread().name


def _slow(seconds: float) -> str:
    time.sleep(seconds)
    return threading.current_thread().name


async def test_two_sockets_run_their_calls_at_the_same_time():
    threads = SyncThreads(4)

    async def socket() -> str:
        return await sync_to_async(_slow)(0.5)

    started = time.monotonic()
    first, second = await asyncio.gather(threads.run(socket), threads.run(socket))
    assert first != second and first.startswith("ws-sync") and second.startswith("ws-sync")
    assert time.monotonic() - started < 0.9, "the second socket waited for the first"


async def test_plain_channels_behaviour_with_one_thread_serialises():
    threads = SyncThreads(1)

    async def socket() -> None:
        await sync_to_async(_slow)(0.3)

    started = time.monotonic()
    await asyncio.gather(threads.run(socket), threads.run(socket))
    assert time.monotonic() - started >= 0.6


async def test_a_sockets_calls_and_its_tasks_stay_on_one_thread_and_the_caller_is_untouched():
    threads = SyncThreads(3)

    async def socket() -> set[str]:
        names = {await sync_to_async(_thread_name)() for _ in range(5)}
        names.add(await asyncio.create_task(sync_to_async(_thread_name)()))
        return names

    names = await threads.run(socket)
    assert len(names) == 1 and next(iter(names)).startswith("ws-sync")
    assert not (await sync_to_async(_thread_name)()).startswith("ws-sync")


async def test_sockets_go_to_the_least_loaded_thread_and_free_it_on_close():
    threads = SyncThreads(2)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        inside.set()
        await release.wait()

    async def peek() -> list[int]:
        return threads.load()

    holder = asyncio.create_task(threads.run(hold))
    await inside.wait()
    assert threads.load() == [1, 0]
    assert await threads.run(peek) == [1, 1]
    release.set()
    await holder
    assert threads.load() == [0, 0]


async def test_a_shielded_teardown_still_reaches_the_thread_after_the_socket_is_cancelled():
    """A socket cancelled by the server (after the client left) still stores what its teardown
    stores, on the socket's thread."""
    threads = SyncThreads(2)
    stored: list[str] = []
    inside = asyncio.Event()
    teardowns: set[asyncio.Task] = set()

    def store() -> None:
        stored.append(threading.current_thread().name)

    async def teardown() -> None:
        await asyncio.sleep(0.2)  # still running when the socket is cancelled
        await sync_to_async(store)()

    async def socket() -> None:
        task = asyncio.ensure_future(teardown())
        teardowns.add(task)
        inside.set()
        await asyncio.shield(task)

    running = asyncio.create_task(threads.run(socket))
    await inside.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.gather(*teardowns)
    assert stored and stored[0].startswith("ws-sync")


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        SyncThreads(0)


@pytest.mark.django_db(transaction=True)
async def test_a_voice_sessions_database_calls_run_on_the_socket_threads(token, user, fake_openai):
    """Through the real ASGI application: the session's stored turn is written on one of the
    WS_SYNC_THREADS threads, not on asgiref's single process-wide one."""
    from channels.db import database_sync_to_async
    from django.db.models.signals import post_save

    from characters import services
    from characters.models import Message
    from tests.voice_helpers import connect, events_until, send, start_session

    character = await database_sync_to_async(services.character_create)(
        owner=user, name="Captain", description="A calm starship captain."
    )
    await database_sync_to_async(services.instance_create)(
        owner=user, character=character, name="Nova"
    )
    saved_on: list[str] = []

    def saved(sender, instance, created, **kwargs) -> None:
        if created and instance.role == "user":
            saved_on.append(threading.current_thread().name)

    post_save.connect(saved, sender=Message, weak=False)
    try:
        ws = await connect(token)
        await start_session(ws, "nova")
        await send(ws, {"type": "input_text", "text": "Hello"})
        await events_until(ws, "transcript.final", timeout=30)
        await ws.disconnect()
    finally:
        post_save.disconnect(saved, sender=Message)
    assert saved_on and saved_on[0].startswith("ws-sync"), saved_on


async def test_socket_threads_close_old_connections_before_each_call(monkeypatch):
    """Channels' per-frame `close_old_connections` hop is skipped (consumers.dispatch); the socket
    threads run it before each call instead, so an obsolete or broken connection is still
    replaced before the next query. (The test database is in-memory SQLite, whose connections
    Django never closes, so the call itself is what is checked.)"""
    import realtime.sync_threads as sync_threads

    order: list[tuple[str, str]] = []
    original = sync_threads.close_old_connections

    def recorded() -> None:
        order.append(("close_old_connections", threading.current_thread().name))
        original()

    def work() -> None:
        order.append(("work", threading.current_thread().name))

    monkeypatch.setattr(sync_threads, "close_old_connections", recorded)
    threads = SyncThreads(1)

    async def socket() -> None:
        await sync_to_async(work)()
        await sync_to_async(work)()

    await threads.run(socket)
    assert [what for what, _ in order] == ["close_old_connections", "work"] * 2
    assert all(name.startswith("ws-sync") for _, name in order)


@pytest.mark.django_db(transaction=True)
async def test_frames_do_not_hop_into_the_database_thread(token, user, monkeypatch):
    """A frame is handled without Channels' `aclose_old_connections` hop; connecting keeps it."""
    import channels.consumer
    from channels.db import database_sync_to_async

    from characters import services
    from tests.voice_helpers import connect, events_until, send, start_session

    hops: list[str] = []
    original = channels.consumer.aclose_old_connections

    async def counted() -> None:
        hops.append("hop")
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    character = await database_sync_to_async(services.character_create)(
        owner=user, name="Captain", description="A calm starship captain."
    )
    await database_sync_to_async(services.instance_create)(
        owner=user, character=character, name="Nova"
    )
    ws = await connect(token)
    assert hops == ["hop"], "connecting goes through Channels' dispatch as before"
    await start_session(ws, "nova")
    for _ in range(5):
        await send(ws, {"type": "ping"})
        await events_until(ws, "pong", timeout=10)
    await ws.disconnect()
    assert hops[:1] == ["hop"] and len(hops) <= 2, hops  # connect (+ disconnect), no frame
