"""`/ws/observe/<instance>/`: watch an instance's sessions live (its owner or staff only)."""

from __future__ import annotations

from channels.db import database_sync_to_async

from accounts.usage import SessionLease
from characters import selectors
from consumers.auth import authenticated_user
from consumers.json_socket import JsonSocketConsumer
from consumers.leases import accept_with_lease
from voice import observe
from voice.gone_watch import gone_watch
from voice.protocol import CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED


class ObserveConsumer(JsonSocketConsumer):
    group: str | None = None
    lease: SessionLease | None = None  # The socket's place among its user's observers.

    async def connect(self) -> None:
        user = authenticated_user(self.scope)
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        instance = await database_sync_to_async(selectors.instance_find_by_name)(
            user=user, name=self.scope["url_route"]["kwargs"]["name"]
        )
        if instance is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return

        async def join() -> None:
            self.group = observe.group_for(instance.id)
            await self.channel_layer.group_add(self.group, self.channel_name)

        self.lease = await accept_with_lease(self, user, "observers", prepare=join)
        if self.lease is None:
            return
        await self.send_json(
            {"type": "observe.started", "instance": {"id": str(instance.id), "name": instance.name}}
        )
        gone_watch().add(self, lambda: (instance.id, None), self._instance_gone)

    async def _instance_gone(self, code: str, message: str) -> None:
        """The instance was deleted: a fatal error, then 4404 (voice/gone_watch.py)."""
        await self.send_json({"type": "error", "code": code, "message": message, "fatal": True})
        await self.close(code=CLOSE_NOT_FOUND)

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", "Observers only send ping.")

    async def observe_event(self, message: dict) -> None:
        await self.send_json(message["event"])

    async def disconnect(self, code: int) -> None:
        gone_watch().discard(self)
        lease, self.lease = self.lease, None
        try:
            if self.group:
                await self.channel_layer.group_discard(self.group, self.channel_name)
        finally:
            if lease is not None:
                await lease.release()
