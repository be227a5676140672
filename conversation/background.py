"""Work that runs after a reply, off its critical path: summary folding and consolidation.

`run_in_background` schedules a coroutine on the running loop (else a thread); `keyed_lock`
serialises work on one conversation or instance within a process; `sweeper_start` runs the
periodic idle sweep. The sweeper starts from the app's lifecycle: `realtime.asgi` wraps the
application in `lifespan_sweeper`, which starts it on the ASGI lifespan `startup` event (daphne
sends none: there the first HTTP or WebSocket connection starts it, once per event loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import weakref
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from asgiref.typing import ASGI3Application as Asgi
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_background: set[asyncio.Task] = set()
_sweepers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def run_in_background(coro: Coroutine, *, what: str = "conversation work") -> None:
    """Run `coro` without blocking the caller: a task on the running loop, else a thread."""

    async def guarded() -> None:
        try:
            await coro
        except Exception:
            logger.exception("Background %s failed.", what)
        finally:
            # The task's ORM calls ran in a thread no request cleans up after: close its connection.
            await sync_to_async(close_old_connections)()

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        threading.Thread(target=asyncio.run, args=(guarded(),), daemon=True).start()
        return
    # A fresh context: the task must not inherit a request's ThreadSensitiveContext, whose
    # executor stops when the request ends.
    task = loop.create_task(guarded(), context=contextvars.Context())
    _background.add(task)
    task.add_done_callback(_background.discard)


def track(task: asyncio.Task) -> None:
    """Count `task` as background work (`wait_background` waits for it)."""
    _background.add(task)
    task.add_done_callback(_background.discard)


async def wait_background() -> None:
    """Wait for scheduled background work (folding, consolidations); for tests and shutdown."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def keyed_lock(kind: str, key: Any) -> asyncio.Lock:
    """One lock per (kind, key) on the running loop: one fold or consolidation at a time."""
    loop = asyncio.get_running_loop()
    locks = _locks.setdefault(loop, {})
    return locks.setdefault((kind, str(key)), asyncio.Lock())


def sweeper_start() -> asyncio.Task | None:
    """Start (once per event loop) the periodic sweep that consolidates idle conversations.

    Returns the sweep task, or None when consolidation or the sweep is switched off.
    """
    if not settings.MEMORY_CONSOLIDATION or settings.MEMORY_SWEEP_SECONDS <= 0:
        return None
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is not None and not task.done():
        return task

    async def sweep() -> None:
        from .memory import consolidate_idle

        while True:
            await asyncio.sleep(settings.MEMORY_SWEEP_SECONDS)
            try:
                await consolidate_idle()
            except Exception:
                logger.exception("Idle memory sweep failed.")

    task = loop.create_task(sweep(), context=contextvars.Context())
    _sweepers[loop] = task
    return task


def sweeper_stop() -> None:
    """Stop this loop's sweep (ASGI lifespan shutdown, tests)."""
    task = _sweepers.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()


def lifespan_sweeper(app: Asgi) -> Asgi:
    """ASGI middleware: start the idle sweep with the server (lifespan), or on first use."""

    async def wrapped(scope: dict, receive, send) -> Any:
        if scope["type"] == "lifespan":
            return await _lifespan(app, scope, receive, send)
        sweeper_start()
        return await app(scope, receive, send)

    return wrapped


async def _lifespan(app: Asgi, scope: dict, receive, send) -> None:
    """Answer the lifespan protocol ourselves (Channels' router does not speak it)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            sweeper_start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            sweeper_stop()
            await wait_background()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def complete_despite_cancel(task: asyncio.Future) -> Any:
    """Await `task` to its end even if the caller is cancelled meanwhile; then re-raise the
    cancel. The task's own errors propagate."""
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            if task.done():
                cancelled = True
                result = task.result()
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
