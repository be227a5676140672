"""Any other WebSocket path (`/ws/voice` without its slash, `/ws/nope/`): `not_found`, 4404.

Without it the router raised, and the edge answered "unavailable, retry" (then 1013), which set
clients reconnecting for ever to a path that will never exist.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from realtime.channel_layer import NO_CHANNEL_LAYER
from realtime.close_codes import NOT_FOUND

ENDPOINTS = "/ws/voice/, /ws/observe/<instance>/, /ws/ping/"


class NotFoundConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER  # Takes no channel: it only refuses.

    async def connect(self) -> None:
        # Closed before accept: the edge sends this reason as the `error` event's message.
        await self.close(
            code=NOT_FOUND,
            reason=f"No WebSocket endpoint at {self.scope['path']}; the endpoints are {ENDPOINTS}.",
        )
