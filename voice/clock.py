"""Maps positions in the input audio stream to wall-clock arrival times.

Latency figures are measured "from the end of the user's speech": the recogniser reports where
the last word ended in stream time, and this clock says when that audio arrived.
"""

from __future__ import annotations

import bisect
import time


class SpeechClock:
    def __init__(self, clock=time.monotonic, keep: int = 2000) -> None:
        self.clock = clock
        self.keep = keep
        self._ends: list[float] = []  # stream seconds at the end of each chunk
        self._arrivals: list[float] = []  # wall time the chunk arrived
        self.position = 0.0

    def add(self, seconds: float, at: float | None = None) -> None:
        """`seconds` more audio, which arrived at `at` (now if None). Stages pass the frame's own
        arrival: under load a frame is processed well after it arrived, and figures measured
        from the end of speech must not start late."""
        self.position += seconds
        self._ends.append(self.position)
        self._arrivals.append(self.clock() if at is None else at)
        if len(self._ends) > self.keep:
            del self._ends[: -self.keep], self._arrivals[: -self.keep]

    def arrival_of(self, stream_seconds: float | None) -> float:
        """Wall time when audio at `stream_seconds` arrived (now, if unknown)."""
        if stream_seconds is None or not self._ends:
            return self.clock()
        index = bisect.bisect_left(self._ends, stream_seconds)
        return self._arrivals[min(index, len(self._arrivals) - 1)]
