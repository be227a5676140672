"""The TTS worker pool on its own (audio_pipeline/tts/worker_pool.py), with a scripted
synthesiser in real worker processes: streaming, a crash, a hang, the waiting bound, a worker
that cannot start."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from audio_pipeline.tts.base import TtsRequestError
from audio_pipeline.tts.worker_pool import (
    PoolBusy,
    WorkerCrashed,
    WorkerHung,
    WorkerPool,
    WorkersDown,
)
from tests.speech.tts_worker_fakes import Scripted


@pytest.fixture
def make_pool():
    pools: list[WorkerPool] = []

    def make(*, size: int = 1, timeout: float = 10.0, max_waiting: int = 4, **scripted):
        pool = WorkerPool(
            "scripted", Scripted(**scripted), size=size, timeout=timeout, max_waiting=max_waiting
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


async def say(pool: WorkerPool, text: str) -> list[bytes]:
    return [pcm async for pcm, _ in pool.synthesize(text, None)]


async def until(condition, seconds: float = 5.0) -> None:
    """Poll: the pool's state changes on its own threads (there is no event to await)."""
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool never reached that state")


def pid_of(chunks: list[bytes]) -> int:
    return int.from_bytes(chunks[1], "little")


async def test_chunks_come_back_in_order_from_a_warm_worker(make_pool):
    pool = make_pool(size=2)
    await asyncio.to_thread(pool.start)
    assert pool.stats()["alive"] == 2
    chunks = await say(pool, "hello")
    assert chunks[0] == b"hello" and pid_of(chunks) > 0
    together = await asyncio.gather(*(say(pool, f"text {n}") for n in range(6)))
    assert [c[0] for c in together] == [f"text {n}".encode() for n in range(6)]
    assert len({pid_of(c) for c in together}) <= 2  # Only the pool's workers served.


async def test_a_crash_fails_that_job_only_and_a_new_worker_serves_the_next(make_pool):
    pool = make_pool(size=1)
    first = pid_of(await say(pool, "before"))
    with pytest.raises(WorkerCrashed, match="SIGABRT") as info:
        await say(pool, "crash")
    assert isinstance(info.value, TtsRequestError)  # A per-request failure.
    after = await say(pool, "after")  # Waits for the replacement (size 1).
    assert after[0] == b"after" and pid_of(after) != first
    assert pool.stats()["restarts"] == 1 and pool.stats()["alive"] == 1


async def test_a_hung_job_is_killed_after_the_timeout_and_the_worker_replaced(make_pool):
    pool = make_pool(size=1, timeout=1.0)
    first = pid_of(await say(pool, "before"))
    started = time.monotonic()
    with pytest.raises(WorkerHung, match="took over 1 s"):
        await say(pool, "hang")
    assert time.monotonic() - started < 3.0
    after = await say(pool, "after")
    assert after[0] == b"after" and pid_of(after) != first
    assert pool.stats()["restarts"] == 1


async def test_a_refused_job_keeps_its_worker(make_pool):
    pool = make_pool(size=1)
    first = pid_of(await say(pool, "before"))
    with pytest.raises(TtsRequestError, match="no voice"):
        await say(pool, "refuse")
    assert pid_of(await say(pool, "after")) == first
    assert pool.stats()["restarts"] == 0


async def test_jobs_past_the_waiting_bound_are_refused_at_once(make_pool):
    pool = make_pool(size=1, timeout=2.0, max_waiting=1)
    await asyncio.to_thread(pool.start)
    hung = asyncio.ensure_future(say(pool, "hang"))
    await until(lambda: pool.stats()["busy"] == 1)
    waiting = asyncio.ensure_future(say(pool, "next in line"))
    await until(lambda: pool.stats()["waiting"] == 1)
    started = time.monotonic()
    with pytest.raises(PoolBusy, match="busy"):
        await say(pool, "one too many")
    assert time.monotonic() - started < 0.5
    with pytest.raises(WorkerHung):
        await hung
    # The one in line gets the replaced worker, or gives up after its wait: never stuck.
    (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
    if isinstance(outcome, Exception):
        assert isinstance(outcome, PoolBusy) and "no worker free in 2 s" in str(outcome)
    else:
        assert outcome[0] == b"next in line"


async def test_workers_that_cannot_start_are_the_engine_down(make_pool):
    pool = make_pool(size=2, load_error="model file missing")
    with pytest.raises(WorkersDown, match="model file missing") as info:
        await asyncio.to_thread(pool.start)
    assert not isinstance(info.value, TtsRequestError)  # Counted against the engine.
    with pytest.raises(WorkersDown, match="model file missing"):
        await say(pool, "hello")
    assert pool.stats()["alive"] == 0


async def test_a_worker_killed_while_idle_is_replaced_before_a_job_uses_it(make_pool):
    pool = make_pool(size=1)
    first = pid_of(await say(pool, "before"))
    os.kill(first, signal.SIGKILL)  # As the out-of-memory killer would.
    await until(lambda: dead(first))
    after = await say(pool, "after")  # Not failed as if its text had crashed the worker.
    assert after[0] == b"after" and pid_of(after) != first
    assert pool.stats()["restarts"] == 1


def dead(pid: int) -> bool:
    """Gone, or a zombie (its parent, the pool, has not polled it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
