"""Per-session limits from settings, and a sliding-window turn rate limiter."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from .protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE


@dataclass(frozen=True)
class VoiceLimits:
    max_frame_bytes: int
    max_text_chars: int
    max_session_seconds: float
    idle_timeout_seconds: float
    turns_per_minute: int
    outbound_queue_items: int

    @classmethod
    def from_settings(cls) -> VoiceLimits:
        return cls(
            max_frame_bytes=settings.WS_MAX_FRAME_BYTES,
            max_text_chars=settings.WS_MAX_TEXT_CHARS,
            max_session_seconds=settings.WS_MAX_SESSION_SECONDS,
            idle_timeout_seconds=settings.WS_IDLE_TIMEOUT_SECONDS,
            turns_per_minute=settings.WS_TURNS_PER_MINUTE,
            outbound_queue_items=settings.WS_OUTBOUND_QUEUE_ITEMS,
        )

    def as_dict(self) -> dict:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_text_chars": self.max_text_chars,
            "max_session_seconds": self.max_session_seconds,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "turns_per_minute": self.turns_per_minute,
            "sample_rates": [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE],
        }


class TurnRateLimiter:
    """Allows at most `per_minute` turns in any 60-second window."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._turns: deque[float] = deque()

    def allow(self) -> bool:
        now = self.clock()
        while self._turns and now - self._turns[0] >= 60.0:
            self._turns.popleft()
        if len(self._turns) >= self.per_minute:
            return False
        self._turns.append(now)
        return True
