"""Per-session limits from settings (per-user ones, turns and sessions: accounts/usage.py)."""

from __future__ import annotations

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
