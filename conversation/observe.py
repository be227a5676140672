"""Observer events for `/ws/observe/<instance>/`, published where conversation state changes.

A turn (whatever its door: HTTP, SSE, the `chat` command, the voice loop) and a memory
consolidation publish their own events here, so an observer sees every one of them. Event
shapes are in docs/protocol.md ("Observing an instance").

Publishing never slows or fails the work it reports: events go through a per-source queue that
one task drains in order, also after the source is done; if the channel layer fails or hangs
(PUBLISH_SECONDS), the rest of that source's events are dropped with one warning.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from .background import track

logger = logging.getLogger(__name__)

PUBLISH_SECONDS = 2.0


def group_for(instance_id: Any) -> str:
    """Channel-layer group of an instance (names allow only ASCII letters, digits, `-_.`)."""
    return f"voz.observe.{getattr(instance_id, 'hex', str(instance_id).replace('-', ''))}"


async def publish(instance_id: Any, event: dict[str, Any]) -> None:
    """Send one event to the instance's observers now (raises what the channel layer raises)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group_for(instance_id), {"type": "observe.event", "event": event})


class Publisher:
    """Ordered, non-blocking publishing for one source (a turn, a consolidation)."""

    def __init__(self, instance_id: Any, *, enabled: bool = True, extra: dict | None = None):
        self.instance_id = instance_id
        self.enabled = enabled and get_channel_layer() is not None
        self.extra = extra or {}
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def put(self, event: dict[str, Any]) -> None:
        """Queue `event` (its `type` first, then its fields, then `extra`)."""
        if not self.enabled:
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        self._queue.put_nowait({**event, **self.extra})

    def close(self) -> None:
        """No more events: what is queued is still sent, in the background (each send bounded by
        PUBLISH_SECONDS); `background.wait_background()` waits for it."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        track(self._task)

    async def _drain(self) -> None:
        while (event := await self._queue.get()) is not None:
            try:
                async with asyncio.timeout(PUBLISH_SECONDS):
                    await publish(self.instance_id, event)
            except Exception as exc:
                logger.warning("Observer events dropped: %s: %s", type(exc).__name__, exc)
                self.enabled = False
                return
