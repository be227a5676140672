"""The Redis channel layer, made to survive redis-py's timeouts and Redis restarts.

Two failures of the stock `channels_redis.core.RedisChannelLayer` are handled here:

1. redis-py 8 gives every socket a 5 s read timeout by default. channels-redis receives with a
   blocking `BZPOPMIN` that waits up to 5 s server-side, so an idle consumer's read races the
   timeout and the consumer dies with 1011 ("Timeout reading from …") within ~6 s
   (django/channels_redis#422, redis/redis-py#4091). Settings give the host an explicit
   `socket_timeout` (REDIS_SOCKET_TIMEOUT, 15 s) well above the blocking wait; a host without
   one gets that default here, and a timeout that would race the wait again is refused.
2. A Redis restart (or a dropped connection) made `receive()` raise inside the consumer, which
   killed the WebSocket. `receive()` here waits and retries with backoff instead, and once Redis
   answers again re-adds this process's group memberships (a restarted Redis without
   persistence has forgotten them). `group_send()` is best effort: while Redis is down messages
   to groups are dropped (logged once per outage), never raised into the sender.
3. `new_channel()` with a prefix other than "specific" made a second process channel that no
   receive loop served while consumers held the first (see `new_channel`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What a lost or restarting Redis raises through redis-py (OSError: resets on a half-open socket).
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

DEFAULT_SOCKET_TIMEOUT_S = 15.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


# A consumer that never receives through the layer sets `channel_layer_alias = NO_CHANNEL_LAYER`:
# it then gets no channel of its own, and its life no longer depends on Redis.
NO_CHANNEL_LAYER = None


class ResilientRedisChannelLayer(RedisChannelLayer):
    """`RedisChannelLayer` whose receive survives Redis restarts and whose group sends never
    raise into the sender. Configured like the stock layer (same CONFIG keys)."""

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
        self.hosts = [dict(host) for host in self.hosts]  # Never mutate the settings' dicts.
        for host in self.hosts:
            host.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT_S)
            host.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
            timeout = host["socket_timeout"]
            if timeout is not None and timeout <= self.brpop_timeout + 1:
                raise ImproperlyConfigured(
                    f"Redis socket_timeout {timeout} s must exceed the channel layer's blocking "
                    f"receive ({self.brpop_timeout} s) by more than 1 s, or idle WebSockets die."
                )
        self._memberships: dict[str, set[str]] = defaultdict(set)
        self._down_since: float | None = None
        self._last_attempt = 0.0

    async def new_channel(self, prefix: str = "specific") -> str:
        """A process-local channel. Every one shares the process's single real channel (the part
        before `!`): the stock layer put other prefixes on a second real channel that waited
        forever for the receive lock held by the consumers' loop (/readyz timed out while any
        socket was open)."""
        name = prefix.rstrip(".").replace("!", "")
        return f"specific.{self.client_prefix}!{name}.{uuid.uuid4().hex}"

    @property
    def available(self) -> bool:
        """False from a failed Redis call until the next successful one."""
        return self._down_since is None

    async def receive(self, channel: str) -> dict:
        delay = RETRY_FIRST_S
        while True:
            try:
                message = await super().receive(channel)
            except REDIS_ERRORS as exc:
                self._went_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                await self._try_restore()
                continue
            self._came_back()
            return message

    async def group_add(self, group: str, channel: str) -> None:
        self._memberships[channel].add(group)
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]
        try:
            await super().group_discard(group, channel)
        except REDIS_ERRORS as exc:  # The membership expires in Redis on its own.
            self._went_down(exc)

    async def group_send(self, group: str, message: dict) -> None:
        if not self.available and time.monotonic() - self._last_attempt < RETRY_MAX_S:
            return  # Known down: drop at once rather than wait on a connect timeout per message.
        self._last_attempt = time.monotonic()
        try:
            await super().group_send(group, message)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return
        self._came_back()

    async def _try_restore(self) -> None:
        """Re-add every group membership of this process once Redis answers again."""
        try:
            for index in range(self.ring_size):
                await self.connection(index).ping()
            for channel, groups in list(self._memberships.items()):
                for group in list(groups):
                    await super().group_add(group, channel)
        except REDIS_ERRORS:
            return
        self._came_back()

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "Channel layer lost Redis (%s: %s); retrying, group messages are dropped meanwhile",
                type(exc).__name__,
                exc,
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "Channel layer reached Redis again after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
