"""Frames handled without Channels' per-message thread hop.

Channels' `AsyncConsumer.dispatch` awaits `aclose_old_connections()` (a `sync_to_async` call,
i.e. a hop into the socket's database thread) before every handler. For `websocket.receive`
that is one hop per frame (50 a second for a voice socket) waiting behind the other sockets'
database work on the same thread, before the frame is even read. The socket threads close old
connections themselves before each database call (realtime.sync_threads), so frames skip it;
connect and disconnect keep Channels' path.
"""

from __future__ import annotations

from typing import Any


class ReceiveWithoutThreadHop:
    """Mixin for Channels WebSocket consumers (put it first in the bases)."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)
