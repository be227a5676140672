"""Cut a coroutine at its k-th suspension, as a task cancel would: for cancellation tables."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cuts:
    """Where to cancel (suspension numbers, 0-based) and what happened."""

    at: Sequence[int]
    settle: int = 0  # event-loop steps between reaching the await and the cancel landing
    suspensions: int = 0
    fired: list[int] = field(default_factory=list)


@types.coroutine
def cut(coro: Coroutine, cuts: Cuts) -> Any:
    """Run `coro`; at each suspension listed in `cuts.at`, let the loop run `cuts.settle` steps,
    then cancel what it waits for and throw `CancelledError` into it (what `Task.cancel()` does
    when it lands at that await)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return stop.value
        error = None
        index = cuts.suspensions
        cuts.suspensions += 1
        if index in cuts.at:
            cuts.fired.append(index)
            for _ in range(cuts.settle):
                yield None  # Let other tasks (a store in its thread) move on meanwhile.
            if isinstance(yielded, asyncio.Future):
                yielded.cancel()
            error = asyncio.CancelledError()
            value = None
            continue
        try:
            value = yield yielded
        except BaseException as exc:  # A real cancel of the outer task: pass it on.
            error = exc
