"""`/ws/ping/`: an authenticated connectivity check (clients test their token and origin)."""

from __future__ import annotations

from consumers.auth import accepted_subprotocol, authenticated_user
from consumers.json_socket import JsonSocketConsumer
from realtime.channel_layer import NO_CHANNEL_LAYER
from voice.protocol import CLOSE_UNAUTHORIZED


class PingConsumer(JsonSocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER  # Needs no channel: a Redis outage cannot close it.

    async def connect(self) -> None:
        user = authenticated_user(self.scope)
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        await self.send_json({"type": "hello", "user": user.get_username()})

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "code": "unknown_type", "fatal": False})
