"""Helpers for the WebSocket edge: refused handshakes are accepted, explained, then closed."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator


async def refusal(ws: WebsocketCommunicator) -> tuple[int, dict]:
    """(close code, the fatal `error` event) of a refused handshake."""
    connected, _ = await ws.connect()
    assert connected, "refusals are accepted first so the client can read why"
    event = await ws.receive_json_from()
    close = await ws.receive_output()
    assert close["type"] == "websocket.close", close
    assert event["type"] == "error" and event["fatal"] is True, event
    return close["code"], event
