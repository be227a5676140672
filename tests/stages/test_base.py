"""The stage itself: frames processed in order inline in one worker, interruptions that cancel
only the current work, and a queue that goes on afterwards."""

from __future__ import annotations

import asyncio

from voice.frames import Frame, Interruption, TextDelta
from voice.stages.base import Stage


class Recorder(Stage):
    """Handles text deltas; a delta reading "block" waits until released or cancelled."""

    handles = (TextDelta,)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.tasks: set[asyncio.Task] = set()
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def process(self, frame: Frame) -> None:
        assert isinstance(frame, TextDelta)
        self.tasks.add(asyncio.current_task())
        if frame.text == "block":
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.append(frame.text)
                raise
        if frame.text == "stray-cancel":
            raise asyncio.CancelledError  # e.g. an engine call cancelled under it
        self.seen.append(frame.text)
        await self.push(frame)


async def until(condition, limit_s: float = 2.0) -> None:
    for _ in range(int(limit_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


def running_recorder() -> tuple[Recorder, list[Frame]]:
    """A running Recorder whose output is collected in the list."""
    stage, out = Recorder(), []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    stage.link(sink=sink)
    stage.start()
    return stage, out


def delta(text: str) -> TextDelta:
    return TextDelta("r1", text)


async def test_frames_run_in_order_inline_in_the_worker():
    stage, out = running_recorder()
    for index in range(200):
        await stage.accept(delta(str(index)))
    await until(lambda: len(out) == 200)
    assert stage.seen == [str(i) for i in range(200)]
    assert stage.tasks == {stage._worker}  # no task per frame
    await stage.stop()


async def test_an_interruption_cancels_the_current_work_and_a_new_worker_goes_on():
    stage, out = running_recorder()
    first_worker = stage._worker
    await stage.accept(delta("block"))
    await asyncio.wait_for(stage.started.wait(), 2)
    await stage.interrupt(Interruption("barge_in"))
    assert stage.cancelled == ["block"]
    assert first_worker.done()
    assert isinstance(out[-1], Interruption)  # passed on after the cut
    await stage.accept(delta("after"))
    await until(lambda: stage.seen == ["after"])
    assert stage._worker is not first_worker and not stage._worker.done()
    await stage.stop()


async def test_reply_content_waiting_behind_the_current_work_is_dropped_by_an_interruption():
    stage, _ = running_recorder()
    await stage.accept(delta("block"))
    await asyncio.wait_for(stage.started.wait(), 2)
    await stage.accept(delta("queued"))  # a ReplyOutput: dropped by the cut
    await stage.interrupt(Interruption("cancel"))
    await stage.accept(delta("later"))
    await until(lambda: "later" in stage.seen)
    assert stage.seen == ["later"]
    await stage.stop()


async def test_a_cancellation_inside_the_work_ends_that_frame_only():
    stage, _ = running_recorder()
    worker = stage._worker
    await stage.accept(delta("stray-cancel"))
    await stage.accept(delta("next"))
    await until(lambda: stage.seen == ["next"])
    assert stage._worker is worker and not worker.done()
    await stage.stop()
    assert worker.done()
