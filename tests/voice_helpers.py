"""Helpers for driving `/ws/voice/` with Channels' WebsocketCommunicator."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from realtime.asgi import application


async def connect(token: str, path: str = "/ws/voice/") -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"{path}?token={token}")
    connected, code = await ws.connect()
    assert connected, f"refused with {code}"
    return ws


async def send(ws: WebsocketCommunicator, message: dict[str, Any]) -> None:
    await ws.send_to(text_data=json.dumps(message))


async def next_event(ws: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """The next text event (binary frames are returned as {"type": "<binary>", "data": ...})."""
    frame = await ws.receive_output(timeout)
    if frame["type"] == "websocket.close":
        return {"type": "<close>", "code": frame.get("code")}
    if frame.get("bytes") is not None:
        return {"type": "<binary>", "data": frame["bytes"]}
    return json.loads(frame["text"])


async def events_until(
    ws: WebsocketCommunicator, kind: str, timeout: float = 30, limit: int = 5000
) -> list[dict[str, Any]]:
    """Collect events up to and including the first of type `kind`."""
    collected = []
    for _ in range(limit):
        event = await next_event(ws, timeout)
        collected.append(event)
        if event["type"] in (kind, "<close>"):
            return collected
    raise AssertionError(f"no {kind} within {limit} events")


async def start_session(ws: WebsocketCommunicator, instance: str, **extra: Any) -> dict[str, Any]:
    await send(ws, {"type": "session.start", "instance": instance, **extra})
    events = await events_until(ws, "session.started")
    return events[-1]
