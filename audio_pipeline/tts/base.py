"""The text-to-speech interface: text in, an async stream of audio chunks out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AudioChunk:
    data: bytes
    format: str  # "mp3" | "pcm16" | "wav"
    sample_rate: int


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str
    language: str  # tag such as "es", "en-US"
    description: str = ""


class TtsError(RuntimeError):
    """An engine failed to produce audio (the engine itself: its breaker opens)."""


class TtsRequestError(TtsError):
    """This request failed and the engine is fine: a voice it does not have, a text it cannot
    say, a worker that crashed or hung on this text. It never opens the engine's breaker, and
    its message may name this request's own settings (it goes back only to this request)."""


class TtsEngine(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(usable now, why not)."""
        ...

    def supports(self, language: str) -> bool: ...

    def default_voice(self, language: str) -> str | None: ...

    def knows_voice(self, voice: str) -> bool: ...

    def voices(self) -> list[Voice]: ...

    def synthesize(
        self, text: str, *, language: str, voice: str | None
    ) -> AsyncIterator[AudioChunk]: ...


def base_language(language: str) -> str:
    return language.lower().replace("_", "-").split("-")[0]


class CircuitBreaker:
    """After a failure, skip the engine for `seconds`; one success closes it again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.open_until = 0.0
        self.last_error = ""

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def record_failure(self, error: str) -> None:
        self.open_until = time.monotonic() + self.seconds
        self.last_error = error

    def record_success(self) -> None:
        self.open_until = 0.0
        self.last_error = ""

    def remaining(self) -> float:
        return max(0.0, self.open_until - time.monotonic())
