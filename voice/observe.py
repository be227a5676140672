"""Live observation of an instance's voice sessions (`/ws/observe/<instance>/`).

A voice session publishes its own events, in the order its client gets them (its turns are
opened with `observe=False`); the group and the transport are conversation.observe's.
"""

from __future__ import annotations

from typing import Any

from conversation.observe import group_for
from conversation.observe import publish as publish_to_instance

__all__ = ["OBSERVED_TYPES", "group_for", "publish"]

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


async def publish(instance_id: Any, event: dict[str, Any]) -> None:
    """Send `event` to the instance's observers if it is one they see."""
    if event.get("type") in OBSERVED_TYPES:
        await publish_to_instance(instance_id, event)
