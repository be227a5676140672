"""The stage: one job in the voice pipeline, fed frames in order, one frame's work at a time.

A stage queues the frames it handles (`handles`) and, so that a reply's frames keep their order,
every `ReplyFrame`; any other frame passes straight through to the next stage (a partial
transcript never waits behind a reply being synthesised). The frame being processed is the
stage's *current work*: it runs inline in the stage's worker task (a token costs no task of its
own), or, with `work_in_task`, in a task of its own that cancelling the worker leaves running.
An `Interruption` (a system frame) overtakes the queue: each stage in turn cancels its current
work (an inline stage's worker is cancelled and a new one takes over the queue once the old one
has wound down) and drops the reply content still waiting (`ReplyOutput`), then the frame moves
on. Stages also pass *reports* upstream, synchronously
(what reached the client, for the reply stage to store what was heard).

Stages know nothing of sockets, databases or engines: engines come in as small callables.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from voice.frames import Frame, Interruption, ReplyFrame, ReplyOutput, SystemFrame

logger = logging.getLogger(__name__)

YIELD_EVERY = 32  # frames processed before the worker lets the event loop run others

Push = Callable[[Frame], Awaitable[None]]
Report = Callable[[Frame], None]


class Stage:
    """Subclasses set `handles` and implement `process`; they may override `queues`, `drops`,
    `on_interruption` and `on_report`."""

    handles: tuple[type[Frame], ...] = ()
    # Each frame's work in a task of its own (for stages whose `stop` lets the current work
    # finish). Otherwise inline in the worker: at tens of thousands of tokens a second, one
    # task and one `asyncio.wait` per frame per stage was a third of the server's CPU.
    work_in_task: bool = False

    def __init__(self) -> None:
        self._queue: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self._work: asyncio.Task | None = None
        self._worker: asyncio.Task | None = None
        self._next: Stage | None = None
        self._sink: Push | None = None
        self._report_up: Report | None = None

    # Wiring ------------------------------------------------------------------------------------

    def link(self, *, next_stage: Stage | None = None, sink: Push | None = None) -> None:
        """Frames pushed go to `next_stage`, or to `sink` for the last stage (tests collect)."""
        self._next, self._sink = next_stage, sink

    def link_reports(self, report_up: Report) -> None:
        """Reports from this stage go to `report_up` (the stages before it)."""
        self._report_up = report_up

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=type(self).__name__)

    async def stop(self) -> None:
        """Cancel everything this stage runs (no interruption's cleanup) and unlink it."""
        tasks = [task for task in (self._work, self._worker) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queue.clear()
        self._work = self._worker = None
        self._next = self._sink = self._report_up = None  # No path back once stopped.

    # Frames in and out --------------------------------------------------------------------------

    async def accept(self, frame: Frame) -> None:
        """Take a frame from the previous stage (or the session)."""
        if isinstance(frame, SystemFrame):
            await self.interrupt(frame)
        elif self.queues(frame):
            self._queue.append(frame)
            self._ready.set()
        else:
            await self.push(frame)

    def queues(self, frame: Frame) -> bool:
        """Whether `frame` waits its turn here (else it passes on at once)."""
        return isinstance(frame, (*self.handles, ReplyFrame))

    async def push(self, frame: Frame) -> None:
        if self._next is not None:
            await self._next.accept(frame)
        elif self._sink is not None:
            await self._sink(frame)

    def report(self, frame: Frame) -> None:
        """Send a report upstream (synchronously: it is seen before anything else runs)."""
        if self._report_up is not None:
            self._report_up(frame)

    def on_report(self, frame: Frame) -> None:
        """A report from a later stage. Default: none of this stage's business."""

    # Work ---------------------------------------------------------------------------------------

    async def process(self, frame: Frame) -> None:
        """This stage's job for one frame: a frame it handles, or a ReplyFrame to pass on."""
        await self.push(frame)

    async def _run(self, after: asyncio.Task | None = None) -> None:
        if after is not None:  # The worker an interruption cancelled winds down first.
            await asyncio.wait({after})
            after = None
        # The task is looked up, never kept in a local: a cancelled task's traceback keeps this
        # frame, and a frame holding its own task is a cycle that only the GC frees (with the
        # whole session behind it: tests/test_load_memory.py).
        current = asyncio.current_task
        done = 0
        while self._worker is current():
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            done += 1
            if done % YIELD_EVERY == 0:
                # Work that never suspends (a push, a socket write) would otherwise run a long
                # queue to its end while every other socket of the process waits.
                await asyncio.sleep(0)
                continue
            frame = self._queue.popleft()
            handler = self.process if isinstance(frame, self.handles) else self.push
            if self.work_in_task:
                await self._run_in_task(handler, frame)
                continue
            self._work = current()
            try:
                await handler(frame)
            except asyncio.CancelledError:
                if current().cancelling():  # This worker was cancelled (interruption or stop).
                    raise
                # Something the work awaited was cancelled, not the stage: as with a task of
                # its own, that frame's work ends and the queue goes on.
                logger.debug("%s: work on %s ended cancelled", type(self).__name__, frame)
            except Exception:
                logger.exception("%s failed on %s", type(self).__name__, frame)
            finally:
                self._work = None

    async def _run_in_task(self, handler: Callable[[Frame], Awaitable[None]], frame: Frame) -> None:
        self._work = asyncio.create_task(handler(frame))
        try:
            await asyncio.wait({self._work})
        finally:
            if self._work.done() and not self._work.cancelled() and self._work.exception():
                logger.error(
                    "%s failed on %s",
                    type(self).__name__,
                    frame,
                    exc_info=self._work.exception(),
                )
            self._work = None

    # Interruption -------------------------------------------------------------------------------

    async def interrupt(self, frame: SystemFrame) -> None:
        """Stop the current work now, pass the frame on, then wait for the work to wind down."""
        work = self.cut(frame) if isinstance(frame, Interruption) else None
        if self._next is not None:
            await self._next.interrupt(frame)
        elif self._sink is not None:
            await self._sink(frame)
        if work is not None:
            await asyncio.wait({work})

    def cut(self, frame: Interruption) -> asyncio.Task | None:
        """Synchronous part of an interruption: drop waiting reply content, cancel the work."""
        self._queue = deque(f for f in self._queue if not self.drops(f))
        self.on_interruption(frame)
        work = self._work
        if work is None or work.done():
            return None
        work.cancel()
        if work is self._worker:  # Inline work: a new worker carries on with the queue.
            self._worker = asyncio.create_task(self._run(after=work), name=type(self).__name__)
        return work

    def drops(self, frame: Frame) -> bool:
        return isinstance(frame, ReplyOutput)

    def on_interruption(self, frame: Interruption) -> None:
        """Reset per-reply state. Default: nothing."""
