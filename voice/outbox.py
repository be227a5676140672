"""The session's outbound side: one bounded queue and one writer.

An event and its binary audio frame go in as one item, so they can never be split by other
events. Audio of an interrupted response still waiting in the queue is dropped, never sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


class OutboxOverflow(Exception):
    """The client does not keep up: more items are waiting than the bound allows."""


@dataclass
class _Item:
    event: dict[str, Any]
    audio: bytes | None = None
    response_id: str | None = None
    on_sent: Callable[[], None] | None = None
    observe: bool = False


@dataclass
class Outbox:
    send_text: SendText
    send_bytes: SendBytes
    max_items: int
    broadcast: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    _queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    _dropped_responses: set[str] = field(default_factory=set)

    def event(self, event: dict[str, Any], *, observe: bool = False) -> None:
        self._put(_Item(event, observe=observe))

    def audio(
        self,
        event: dict[str, Any],
        data: bytes,
        *,
        response_id: str,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self._put(_Item(event, data, response_id, on_sent))

    def drop_audio_of(self, response_id: str) -> None:
        """No audio of this response leaves the server from now on."""
        self._dropped_responses.add(response_id)

    def _put(self, item: _Item) -> None:
        if self._queue.qsize() >= self.max_items:
            raise OutboxOverflow(f"{self._queue.qsize()} messages waiting for a slow client.")
        self._queue.put_nowait(item)

    async def run(self) -> None:
        """The writer: sends items in order until cancelled."""
        while True:
            item: _Item = await self._queue.get()
            try:
                await self._write(item)
            finally:
                self._queue.task_done()

    async def _write(self, item: _Item) -> None:
        if item.audio is not None:
            if item.response_id in self._dropped_responses:
                return
            await self.send_text(json.dumps(item.event, ensure_ascii=False))
            await self.send_bytes(item.audio)
            if item.on_sent:
                item.on_sent()
            return
        await self.send_text(json.dumps(item.event, ensure_ascii=False))
        if item.observe and self.broadcast is not None:
            try:
                await self.broadcast(item.event)
            except Exception:  # Observers are best effort; the session goes on.
                logger.exception("Could not broadcast to observers")

    async def drain(self, limit_s: float = 2.0) -> None:
        """Wait (bounded) until everything queued has been written."""
        try:
            await asyncio.wait_for(self._queue.join(), limit_s)
        except TimeoutError:
            logger.warning("Outbox not drained within %.1f s", limit_s)
