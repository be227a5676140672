"""A test application for daphne: the real WebSocket edge in front of a consumer that fails or
closes with any code on request, so the edge's close paths run in daphne
(tests/test_close_codes_daphne.py). HTTP (`/healthz`) is the real application's."""

from __future__ import annotations

from realtime.asgi import application as voz  # isort: skip  (sets Django up first)

from channels.generic.websocket import AsyncWebsocketConsumer

from consumers.edge import WebSocketEdge
from realtime.channel_layer import NO_CHANNEL_LAYER


class FailingConsumer(AsyncWebsocketConsumer):
    """Accepts; then the text "raise" raises (a bug), and a number closes with that code."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if text_data == "raise":
            raise RuntimeError("a bug, on purpose")
        await self.close(code=int(text_data or "1000"))


_edge = WebSocketEdge(FailingConsumer.as_asgi())


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        return await _edge(scope, receive, send)
    return await voz(scope, receive, send)
