"""Links stages into a chain, owns their tasks, routes reports upstream, and stops it all.

    recognise → [voice activity, end of turn: later] → turns → reply → split → speak → deliver

Frames enter at the head (`send`) or straight at the end (`deliver`, for session events); an
`Interruption` entering anywhere travels down from there, cancelling each stage's current work.
"""

from __future__ import annotations

from collections.abc import Sequence

from .frames import Frame, Interruption
from .stages.base import Stage


class Pipeline:
    def __init__(self, stages: Sequence[Stage]) -> None:
        if not stages:
            raise ValueError("A pipeline needs at least one stage.")
        self.stages = list(stages)
        for position, stage in enumerate(self.stages):
            following = self.stages[position + 1] if position + 1 < len(self.stages) else None
            stage.link(next_stage=following)
            stage.link_reports(self._reporter(position))
        self._started = False

    def _reporter(self, position: int):
        earlier = self.stages[:position][::-1]

        def report(frame: Frame) -> None:
            for stage in earlier:  # Nearest first; each takes what concerns it.
                stage.on_report(frame)

        return report

    def start(self) -> None:
        for stage in self.stages:
            stage.start()
        self._started = True

    async def send(self, frame: Frame) -> None:
        """Into the head of the chain."""
        await self.stages[0].accept(frame)

    async def deliver(self, frame: Frame) -> None:
        """Straight into the last stage (session events that no stage transforms)."""
        await self.stages[-1].accept(frame)

    async def interrupt(self, reason: str) -> None:
        """Stop the reply in flight (if any) and wait until it is stored."""
        await self.stages[0].interrupt(Interruption(reason))

    async def close(self) -> None:
        """Interrupt (so the reply in flight is stored, marked), then cancel every task."""
        if self._started:
            await self.interrupt("closed")
        for stage in self.stages:
            await stage.stop()
        self._started = False
