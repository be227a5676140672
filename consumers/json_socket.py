"""A JSON WebSocket consumer that answers bad frames with an `error` event instead of crashing.

Channels' AsyncJsonWebsocketConsumer raises on a binary frame or on text that is not JSON, which
ends the consumer (close 1011) without its disconnect handler. Observe and ping sockets use this.
Frames are read and written as strict JSON (realtime.strict_json: no NaN, no overlong numbers).
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from consumers.dispatch import ReceiveWithoutThreadHop
from realtime import strict_json


class JsonSocketConsumer(ReceiveWithoutThreadHop, AsyncJsonWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kw):
        if text_data is None:
            await self.send_error("binary_not_supported", "This socket takes JSON text frames.")
            return
        try:
            content = strict_json.loads(text_data)
        except strict_json.JsonInputError as exc:
            await self.send_error("bad_json", f"Text frames must be JSON: {exc.message}")
            return
        await self.receive_json(content, **kw)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return strict_json.dumps(content)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json(
            {"type": "error", "code": code, "message": message, "fatal": False, **extra}
        )
