"""A socket's place among its user's open sockets of one kind (accounts.usage.SessionLease),
taken before the handshake is accepted and given back on every way out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.usage import SessionLease
from consumers.auth import accepted_subprotocol
from voice.protocol import CLOSE_TOO_MANY_SESSIONS


async def accept_with_lease(
    consumer: AsyncWebsocketConsumer,
    user,
    kind: str = "sessions",
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> SessionLease | None:
    """Take `user`'s place among sockets of `kind`, run `prepare` (e.g. join a group), accept.
    Returns the lease, or None when the user has no place left (closed 4409
    `too_many_sessions`). A failure after the place is taken gives it back and is raised: no
    disconnect follows a failed connect."""
    lease = SessionLease(user, kind)  # A Redis outage lets it through (logged).
    if not await lease.take():
        await consumer.close(code=CLOSE_TOO_MANY_SESSIONS)
        return None
    try:
        if prepare is not None:
            await prepare()
        await consumer.accept(subprotocol=accepted_subprotocol(consumer.scope))
    except BaseException:
        await lease.release()
        raise
    return lease
