"""`run_stage`: drive one stage with plain frames and collect what it pushes and reports.

Modelled on Pipecat's `run_test` (a source and a sink around the processor under test), ours is
smaller: the stage's pushes land in `run.down`, its upstream reports in `run.up`, and a
`downstream` function may answer pushed frames with reports, as the later stages would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from voice.frames import Frame, SpeechDone, TextEnd
from voice.stages.base import Stage

SETTLE_STEPS = 500  # event-loop turns to let a stage with pure-async fakes reach idle


@dataclass(frozen=True)
class Report:
    """Feed `frame` to the stage as a report from downstream (not as an input frame)."""

    frame: Frame


@dataclass
class StageRun:
    down: list[Frame] = field(default_factory=list)
    up: list[Frame] = field(default_factory=list)

    def of(self, kind: type) -> list:
        return [frame for frame in self.down if isinstance(frame, kind)]

    def kinds(self) -> list[str]:
        return [type(frame).__name__ for frame in self.down]


def speech_done(frame: Frame) -> list[Frame]:
    """A downstream that has delivered every reply as soon as its text ends."""
    return [SpeechDone(frame.response_id)] if isinstance(frame, TextEnd) else []


async def settle(stage: Stage, steps: int = SETTLE_STEPS) -> None:
    """Let the loop run until the stage has nothing queued and no work (or `steps` turns)."""
    for _ in range(steps):
        if not stage._queue and stage._work is None:
            return
        await asyncio.sleep(0)


async def run_stage(
    stage: Stage,
    frames: Iterable[Frame | Report],
    *,
    downstream: Callable[[Frame], list[Frame]] = lambda frame: [],
    run: StageRun | None = None,
    stop: bool = True,
) -> StageRun:
    """Send `frames` one by one (letting the stage settle after each), then stop the stage."""
    run = run or StageRun()

    async def sink(frame: Frame) -> None:
        run.down.append(frame)
        for answer in downstream(frame):
            stage.on_report(answer)

    stage.link(sink=sink)
    stage.link_reports(run.up.append)
    stage.start()
    for item in frames:
        if isinstance(item, Report):
            stage.on_report(item.frame)
        else:
            await stage.accept(item)
        await settle(stage)
    if stop:
        await stage.stop()
    return run
