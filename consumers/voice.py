"""`/ws/voice/`: the real-time voice loop (protocol in docs/protocol.md, shape in
docs/architecture.md). Thin: a VoiceSession holds the pipeline and its tasks; this class only
moves WebSocket frames in and out."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.usage import SessionLease
from consumers.auth import authenticated_user
from consumers.dispatch import ReceiveWithoutThreadHop
from consumers.leases import accept_with_lease
from realtime.channel_layer import NO_CHANNEL_LAYER
from voice.protocol import CLOSE_UNAUTHORIZED
from voice.session import VoiceSession


class VoiceConsumer(ReceiveWithoutThreadHop, AsyncWebsocketConsumer):
    # Receives nothing through the layer (it only publishes to observers, best effort), so it
    # takes no channel there and a Redis outage cannot close it.
    channel_layer_alias = NO_CHANNEL_LAYER
    session: VoiceSession | None = None
    lease: SessionLease | None = None  # The session's place among its user's open ones.

    async def connect(self) -> None:
        user = authenticated_user(self.scope)
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.lease = await accept_with_lease(self, user)
        if self.lease is None:
            return
        self.session = VoiceSession(
            user=user,
            send_text=lambda text: self.send(text_data=text),
            send_bytes=lambda data: self.send(bytes_data=data),
            close=lambda code: self.close(code=code),
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if bytes_data is not None:
            await self.session.on_bytes(bytes_data)
        else:
            await self.session.on_text(text_data or "")

    async def disconnect(self, code: int) -> None:
        session, self.session = self.session, None
        lease, self.lease = self.lease, None
        try:
            if session is not None:
                await session.disconnected()
        finally:
            if lease is not None:
                await lease.release()
