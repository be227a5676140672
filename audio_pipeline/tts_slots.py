"""Per-user cap on concurrent `POST /api/tts` jobs (TTS_CONCURRENT_PER_USER), in this process.

TTS engines run in this process's worker pools (TTS_WORKERS per engine), so the resource one
user can take from others is this process's workers: the count is kept per process, like the
pools. A request past the cap is refused (429 `rate_limited`, Retry-After) at once instead of
queueing behind the user's own jobs and in front of everyone else's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings

_held: Counter[Any] = Counter()


class TtsSlot:
    """One running TTS job of a user; `release()` (idempotent) when its response is done."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        _held[self.key] -= 1
        if _held[self.key] <= 0:
            del _held[self.key]


def slot_take(key: Any) -> TtsSlot | None:
    """A slot for a job of user `key`, or None when the user already runs
    TTS_CONCURRENT_PER_USER of them (0 or less: no cap). Called on the event loop only, so the
    check and the count are one step."""
    limit = settings.TTS_CONCURRENT_PER_USER
    if limit > 0 and _held[key] >= limit:
        return None
    _held[key] += 1
    return TtsSlot(key)


def held(key: Any) -> int:
    """How many TTS jobs user `key` runs now (tests, diagnostics)."""
    return _held[key]
