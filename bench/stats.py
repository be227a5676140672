"""Percentiles and per-mark summaries of turn results (pure functions, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable

MARKS = (
    "transcript_final",
    "first_token",
    "first_sentence",
    "first_chunk",
    "first_audio",
    "last_audio",
)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    rank = (len(data) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return round(data[low] + (data[high] - data[low]) * (rank - low), 1)


def summary(values: Iterable[float | None]) -> dict:
    data = [v for v in values if v is not None]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "min": round(min(data), 1) if data else None,
        "max": round(max(data), 1) if data else None,
    }


def summarise_turns(results: list[dict]) -> dict:
    """Per client mark and per server metric: n, p50, p90, p95, p99 (ms from the end of speech)."""
    ok = [r for r in results if r["ok"]]
    client = {mark: summary(r["marks"].get(mark) for r in ok) for mark in MARKS}
    names = sorted({name for r in ok for name in r["server"]})
    server = {name: summary(r["server"].get(name) for r in ok) for name in names}
    return {
        "turns": len(results),
        "ok": len(ok),
        "failed": [{"turn": r["turn"], "errors": r["errors"]} for r in results if not r["ok"]],
        "client": client,
        "server": server,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)
