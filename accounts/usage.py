"""Per-user limits across doors and server processes: turns a minute and concurrent sessions.

One budget per user, whatever the door and however many sockets or processes it uses:

- **Turns**: at most WS_TURNS_PER_MINUTE turns in any 60 s (REST chat, its event stream, the voice
  socket's spoken and typed turns). `turn_take` counts one or says how long to wait.
- **Sessions**: at most WS_MAX_SESSIONS_PER_USER open voice sessions, and as many observe sockets
  (counted apart: watching does not take a place to talk). Each holds a lease that
  expires after SESSION_LEASE_SECONDS unless renewed (a `SessionLease` renews it every third of
  that while the socket lives and lets go on disconnect), so a crashed process locks nobody out
  for longer than that.

With REDIS_URL the counts live in Redis (sorted sets changed by Lua scripts, timed by Redis' own
clock, so every process agrees); without it, in this process. A Redis error, or no answer within
STORE_TIMEOUT_S, lets the turn or session through (logged): the limits protect the server, and an
outage must not stop or stall calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import weakref
from collections import deque
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

WINDOW_S = 60.0
STORE_TIMEOUT_S = 1.0  # A blackholed Redis would otherwise hold each turn for the connect timeout.

# KEYS[1]: the user's turn log; ARGV: limit, window (ms), a unique member.
# Returns -1 when the turn is counted, else the milliseconds until one is allowed.
_TURN_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""

# KEYS[1]: the user's session leases (member → expiry, ms); ARGV: member, limit, ttl (ms).
# Returns 1 when the lease is taken or renewed (a held lease is always renewed), else 0.
_LEASE_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""


class MemoryCounts:
    """The counts of this process (no REDIS_URL)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.turns: dict[str, deque[float]] = {}
        self.leases: dict[str, dict[str, float]] = {}

    async def turn_take(self, key: str, limit: int) -> float | None:
        now = self.clock()
        log = self.turns.setdefault(key, deque())
        while log and now - log[0] >= WINDOW_S:
            log.popleft()
        if len(log) >= limit:
            return log[0] + WINDOW_S - now
        log.append(now)
        return None

    async def lease_take(self, key: str, member: str, limit: int, ttl: float) -> bool:
        now = self.clock()
        held = self.leases.setdefault(key, {})
        for other, expiry in list(held.items()):
            if expiry <= now:
                del held[other]
        if member not in held and len(held) >= limit:
            return False
        held[member] = now + ttl
        return True

    async def lease_release(self, key: str, member: str) -> None:
        self.leases.get(key, {}).pop(member, None)


class RedisCounts:
    """The counts in Redis, shared by every process (one client per event loop)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> tuple[Any, Any, Any]:
        """(client, turn script, lease script) of the running event loop."""
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            from redis.asyncio import Redis

            client = Redis.from_url(
                self.url,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            )
            found = (
                client,
                client.register_script(_TURN_TAKE),
                client.register_script(_LEASE_TAKE),
            )
            self._clients[loop] = found
        return found

    async def turn_take(self, key: str, limit: int) -> float | None:
        _, turn_take, _ = self._client()
        wait_ms = await turn_take(keys=[key], args=[limit, int(WINDOW_S * 1000), uuid.uuid4().hex])
        return None if int(wait_ms) < 0 else int(wait_ms) / 1000

    async def lease_take(self, key: str, member: str, limit: int, ttl: float) -> bool:
        _, _, lease_take = self._client()
        taken = await lease_take(keys=[key], args=[member, limit, int(ttl * 1000)])
        return bool(int(taken))

    async def lease_release(self, key: str, member: str) -> None:
        client, _, _ = self._client()
        await client.zrem(key, member)


_counts: MemoryCounts | RedisCounts | None = None


def counts() -> MemoryCounts | RedisCounts:
    """The process's store: Redis when REDIS_URL is set, else memory."""
    global _counts
    if _counts is None:
        _counts = RedisCounts(settings.REDIS_URL) if settings.REDIS_URL else MemoryCounts()
    return _counts


def counts_reset() -> None:
    """Forget this process's store (tests; settings changed)."""
    global _counts
    _counts = None


def _key(kind: str, user: Any) -> str:
    return f"{settings.REDIS_PREFIX}:voz:{kind}:{user.pk}"


async def turn_take(user: Any) -> float | None:
    """Count one turn of `user`: None when allowed, else the seconds until one is (> 0)."""
    limit = settings.WS_TURNS_PER_MINUTE
    if limit <= 0:
        return None
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            return await counts().turn_take(_key("turns", user), limit)
    except Exception as exc:
        logger.warning("Turn budget not checked (%r); the turn goes on.", exc)
        return None


def turn_refusal(wait_s: float) -> str:
    """The message of a refused turn."""
    return (
        f"More than {settings.WS_TURNS_PER_MINUTE} turns in a minute for this user (all "
        f"sessions and requests together); retry in {retry_after(wait_s)} s."
    )


def retry_after(wait_s: float) -> int:
    """Whole seconds to wait (for `Retry-After`), at least 1."""
    return max(1, math.ceil(wait_s))


class SessionLease:
    """One socket's place among its user's WS_MAX_SESSIONS_PER_USER of its `kind` ("sessions":
    voice, "observers": observe): `take()`, then `release()` when the socket ends; renewed
    meanwhile by a task of its own."""

    def __init__(self, user: Any, kind: str = "sessions") -> None:
        self.key = _key(kind, user)
        self.member = uuid.uuid4().hex
        self._renewer: asyncio.Task | None = None

    async def take(self) -> bool:
        """Whether the session may open (False: the user has the most sessions open)."""
        limit = settings.WS_MAX_SESSIONS_PER_USER
        if limit <= 0:
            return True
        try:
            taken = await self._take(limit)
        except Exception as exc:
            logger.warning("Session limit not checked (%r); the session opens.", exc)
            taken = True
        if taken:
            self._renewer = asyncio.create_task(self._renew(), name="SessionLease.renew")
        return taken

    async def _take(self, limit: int) -> bool:
        ttl = settings.SESSION_LEASE_SECONDS
        async with asyncio.timeout(STORE_TIMEOUT_S):
            return await counts().lease_take(self.key, self.member, limit, ttl)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(max(0.1, settings.SESSION_LEASE_SECONDS / 3))
            try:
                await self._take(limit=2**31)  # A lease held is renewed whatever the others.
            except Exception as exc:
                logger.warning("Session lease not renewed (%r).", exc)

    async def release(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is None:
            return
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await counts().lease_release(self.key, self.member)
        except Exception as exc:
            logger.warning("Session lease not released (%r); it expires by itself.", exc)
