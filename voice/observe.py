"""Live observation of an instance's sessions through the channel layer (Redis or in-memory)."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

OBSERVED_TYPES = {
    "session.started",
    "transcript.partial",
    "transcript.final",
    "response.started",
    "response.text.delta",
    "response.sentence",
    "response.done",
    "session.ended",
}


def group_for(instance_id: Any) -> str:
    """Channel-layer group of an instance (names allow only ASCII letters, digits, `-_.`)."""
    return f"voz.observe.{getattr(instance_id, 'hex', str(instance_id).replace('-', ''))}"


async def publish(group: str, event: dict[str, Any]) -> None:
    if event.get("type") not in OBSERVED_TYPES:
        return
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, {"type": "observe.event", "event": event})
