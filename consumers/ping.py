"""`/ws/ping/`: an authenticated connectivity check (clients test their token and origin).

A user holds at most WS_MAX_SESSIONS_PER_USER of them, counted apart from voice and observe
sockets (4409 `too_many_sessions` past them): each open socket costs a connection and a credential
re-check every WS_AUTH_RECHECK_SECONDS, and one token opened any number."""

from __future__ import annotations

from accounts.usage import SessionLease
from consumers.auth import authenticated_user
from consumers.json_socket import JsonSocketConsumer
from consumers.leases import accept_with_lease
from realtime.channel_layer import NO_CHANNEL_LAYER
from voice.protocol import CLOSE_UNAUTHORIZED


class PingConsumer(JsonSocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER  # Needs no channel: a Redis outage cannot close it.
    lease: SessionLease | None = None  # The socket's place among its user's ping sockets.

    async def connect(self) -> None:
        user = authenticated_user(self.scope)
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.lease = await accept_with_lease(self, user, "pings")
        if self.lease is None:
            return
        await self.send_json({"type": "hello", "user": user.get_username()})

    async def disconnect(self, code: int) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            await lease.release()

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "code": "unknown_type", "fatal": False})
