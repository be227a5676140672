"""Deliver: frames → wire events on the socket, in order, through one bounded queue.

An event and its binary audio frame are written together, so nothing comes between them. An
interruption drops the audio still waiting (never sent); a write in progress finishes. Reports
go upstream as things reach the socket: each sentence's audio (`SentenceDelivered`) and the end
of a reply (`SpeechDone`). More than `max_items` frames waiting means the client does not read:
`on_overflow` is called (once) and the frame is dropped.

`PauseReply` holds the reply's frames (those waiting and those still to come) without sending
them; `ResumeReply` sends `response.resumed` and then them, in order; an interruption drops the
held audio and sends the rest (text), as it does for audio waiting in the queue. What is held
was not heard: it is reported delivered only when it goes out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from realtime import strict_json
from voice import protocol
from voice.frames import (
    Frame,
    Interruption,
    PauseReply,
    ReplyFrame,
    ResumeReply,
    SentenceAudio,
    SentenceDelivered,
    SpeechDone,
    TextDelta,
    TextEnd,
)

from .base import Stage

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]
Broadcast = Callable[[dict[str, Any]], Awaitable[None]]


class DeliverStage(Stage):
    handles = (Frame,)

    def __init__(
        self,
        send_text: SendText,
        send_bytes: SendBytes,
        *,
        max_items: int,
        on_overflow: Callable[[str], None] = lambda message: None,
        broadcast: Broadcast | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._max_items = max_items
        self._on_overflow = on_overflow
        self._overflowed = False
        self._broadcast = broadcast
        self._clock = clock
        self._paused = False
        self._held: deque[Frame] = deque()  # reply frames held while paused, in order

    def set_broadcast(self, broadcast: Broadcast | None) -> None:
        """Observed events also go to `broadcast` (the instance's observers)."""
        self._broadcast = broadcast

    async def stop(self) -> None:
        await super().stop()
        self._send_text, self._send_bytes, self._broadcast = _discard, _discard, None
        self._on_overflow = _ignore

    async def accept(self, frame: Frame) -> None:
        if isinstance(frame, PauseReply):
            self._paused = True
            self._held.extend(f for f in self._queue if isinstance(f, ReplyFrame))
            self._queue = deque(f for f in self._queue if not isinstance(f, ReplyFrame))
            return
        if isinstance(frame, ResumeReply):
            self._paused = False
            held, self._held = self._held, deque()
            await super().accept(frame)
            for item in held:
                await super().accept(item)
            return
        if self._paused and isinstance(frame, ReplyFrame):
            self._held.append(frame)
            return
        if not isinstance(frame, Interruption) and len(self._queue) >= self._max_items:
            if not self._overflowed:
                self._overflowed = True
                self._on_overflow(f"{len(self._queue)} messages waiting for a slow client.")
            return
        await super().accept(frame)

    def cut(self, frame: Interruption) -> asyncio.Task | None:
        self._paused = False
        held, self._held = self._held, deque()
        self._queue = deque(f for f in (*self._queue, *held) if not self.drops(f))
        if self._queue:
            self._ready.set()
        return None  # A write in progress completes: an event is never split from its audio.

    def drops(self, frame: Frame) -> bool:
        return isinstance(frame, SentenceAudio)

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, TextDelta):
            frame = self._coalesce(frame)
        for event, audio in protocol.events_for(frame):
            await self._send_text(strict_json.dumps(event, ensure_ascii=False))
            if audio is not None:
                await self._send_bytes(audio)
            if self._broadcast is not None and protocol.observed(event):
                try:
                    await self._broadcast(event)
                except Exception:  # Observers are best effort; the session goes on.
                    logger.exception("Could not broadcast to observers")
        if isinstance(frame, SentenceAudio):
            self.report(
                SentenceDelivered(
                    frame.response_id, frame.index, self._clock(), frame.made_at, frame.duration_ms
                )
            )
        elif isinstance(frame, TextEnd):
            self.report(SpeechDone(frame.response_id))

    def _coalesce(self, frame: TextDelta) -> TextDelta:
        """The text deltas of the same reply already waiting right behind this one go out with
        it, as one event. Nothing waits for this: only what is queued is merged, i.e. when the
        socket (or the process) is behind. A write costs the same for one token or ten: at 300
        typed sessions writing frames was 30 % of the event loop (docs/performance.md)."""
        queue, parts = self._queue, [frame.text]
        while queue and type(queue[0]) is TextDelta and queue[0].response_id == frame.response_id:
            parts.append(queue.popleft().text)
        return frame if len(parts) == 1 else replace(frame, text="".join(parts))

    async def drain(self, limit_s: float = 2.0) -> None:
        """Wait (bounded) until everything queued has been written."""
        deadline = self._clock() + limit_s
        while self._queue or self._work is not None:
            if self._clock() >= deadline:
                logger.warning("Outgoing frames not drained within %.1f s", limit_s)
                return
            await asyncio.sleep(0.01)


async def _discard(data: Any) -> None:
    """The socket is gone."""


def _ignore(message: str) -> None:
    """The session is gone."""
