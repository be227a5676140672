"""Live sockets notice when what they use is deleted: the instance (its conversations go with
it) or the conversation a voice session is in.

Before, a voice session whose instance was deleted stayed open and answered every turn with
`llm_failed`. Now one task per event loop asks, every `WS_AUTH_RECHECK_SECONDS` (one query for
all the process's instances, one for their conversations), which of them are gone, and a deletion
in this process (the API, the admin) wakes it at once, after its transaction commits. A socket
whose instance or conversation is gone gets a fatal `instance_not_found` or
`conversation_not_found` and close code 4404 (its `on_gone` callback does that).

A failing check (database outage) keeps every socket and tries again at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from characters import selectors

logger = logging.getLogger(__name__)

OnGone = Callable[[str, str], Awaitable[None]]  # (error code, message) → close the socket
Watched = Callable[[], tuple[Any, Any]]  # → (instance id, conversation id or None), now
FALLBACK_INTERVAL_S = 5.0  # With WS_AUTH_RECHECK_SECONDS = 0, deletions still close sockets.


class GoneWatch:
    """The sockets of one event loop: `add(key, watched, on_gone)`, `discard(key)`, `wake()`."""

    def __init__(self) -> None:
        self._sockets: dict[Any, tuple[Watched, OnGone]] = {}
        self._task: asyncio.Task | None = None
        self._woken = asyncio.Event()

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, key: Any, watched: Watched, on_gone: OnGone) -> None:
        self._sockets[key] = (watched, on_gone)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gone-watch")

    def discard(self, key: Any) -> None:
        self._sockets.pop(key, None)

    def wake(self) -> None:
        """Check now (something was deleted)."""
        self._woken.set()

    async def check(self) -> None:
        """One check of every socket: those whose instance or conversation is gone are told."""
        current = {key: (watched(), on_gone) for key, (watched, on_gone) in self._sockets.items()}
        try:
            gone = await sync_to_async(what_is_gone)(
                {key: ids for key, (ids, _) in current.items()}
            )
        except Exception as exc:  # An outage: keep every socket, try again next time.
            logger.warning("Could not check the sockets' instances: %s", exc)
            return
        for key, (code, message) in gone.items():
            if self._sockets.pop(key, None) is not None:
                await current[key][1](code, message)

    async def _run(self) -> None:
        interval = settings.WS_AUTH_RECHECK_SECONDS or FALLBACK_INTERVAL_S
        while self._sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.05, interval))
            self._woken.clear()
            await self.check()


def what_is_gone(sockets: dict[Any, tuple[Any, Any]]) -> dict[Any, tuple[str, str]]:
    """{key: (error code, message)} for the sockets whose instance or conversation no longer
    exists (blocking: ORM, two queries for any number of sockets)."""
    ids = {
        key: (_uuid(instance), _uuid(conversation))
        for key, (instance, conversation) in sockets.items()
    }
    live_instances = selectors.instances_existing(
        instance_ids={instance for instance, _ in ids.values() if instance}
    )
    live_conversations = selectors.conversations_existing(
        conversation_ids={conversation for _, conversation in ids.values() if conversation}
    )
    gone: dict[Any, tuple[str, str]] = {}
    for key, (instance, conversation) in ids.items():
        if instance not in live_instances:
            gone[key] = ("instance_not_found", "This instance was deleted.")
        elif conversation and conversation not in live_conversations:
            gone[key] = ("conversation_not_found", "This conversation was deleted.")
    return gone


def _uuid(value: Any) -> uuid.UUID | None:
    """An id as the database keeps it (a conversation id may arrive as a string), or None."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GoneWatch] = (
    weakref.WeakKeyDictionary()
)


def gone_watch() -> GoneWatch:
    """The running event loop's watch."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = GoneWatch()
    return watch


def wake_all() -> None:
    """Wake every event loop's watch (thread-safe: deletions run on Django's threads)."""
    for loop, watch in list(_watches.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(watch.wake)
