"""`/readyz` details.event_loop: the lag over the last minute and over the last 10 s."""

from __future__ import annotations

from realtime.server import LoopLag


def test_a_burst_shows_in_the_last_10_seconds_and_then_only_in_the_minute():
    lag = LoopLag(interval_s=0.05, window=1200)  # a minute of 50 ms samples
    lag.samples_ms.extend([1.0] * 1198 + [84.0, 60.0])  # a start burst just now
    summary = lag.summary()
    assert summary["last_10_s"] == {"p99_ms": 60.0, "max_ms": 84.0}  # 2 of 200 samples
    assert summary["p99_ms"] == 1.0 and summary["max_ms"] == 84.0  # diluted in the minute

    lag.samples_ms.extend([2.0] * 200)  # 10 quiet seconds later
    summary = lag.summary()
    assert summary["last_10_s"] == {"p99_ms": 2.0, "max_ms": 2.0}
    assert summary["max_ms"] == 84.0


def test_no_samples_yet():
    assert LoopLag().summary() == {"samples": 0}
