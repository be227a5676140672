"""Supervised worker processes for TTS engines that run native code (Piper, libespeak-ng).

A crash in native code (a segfault in espeak-ng's phonemizer, glibc aborting on a buffer
overflow: issue 21, upstream espeak-ng #2495) ends the process it runs in. In the server that
is every session on it; in a worker it is one job. `WorkerPool` keeps `size` worker processes
per engine, each with its model loaded, and hands each job to an idle one:

- a worker that dies during a job fails that job (`WorkerCrashed`, a per-request error: it
  never opens the engine's breaker) and is replaced in the background;
- a worker that sends nothing for `timeout` seconds is killed and replaced (`WorkerHung`);
- at most `max_waiting` jobs wait for a worker; more are refused at once (`PoolBusy`);
- workers that cannot start at all (a model missing, a library absent) are the engine being
  down: `WorkersDown`, which the chain counts against the engine.

Why our own small supervisor over `multiprocessing` Pipes rather than
`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies the executor is broken
as a whole (`BrokenProcessPool`): every job in flight on the other workers fails too and a new
executor must be made; it cannot kill one hung job; and it returns a function's result only when
the function returns, while Piper makes a text's audio sentence by sentence and the first one
should be played at once. Here each worker has its own Pipe: chunks go through it as they are
made (one pickle each way, no shared-memory bookkeeping), and a crash or a hang costs that
worker's job only.

Workers are started as fresh interpreters (`python -c …serve_worker(fd)`, what `spawn` does)
and never as a `fork` of the server, whose threads, event loop and database connections must not
be copied. Unlike multiprocessing's `spawn` and `forkserver`, this does not import the server's
main module again in each worker (daphne's script, `python -m realtime.server`, pytest): a
worker imports only its engine's modules. Starting one costs ~1 s (imports and the model),
paid at warm-up and after a crash, never per job: workers are kept warm, their model loaded.
The pipe is a socketpair wrapped in `multiprocessing.connection.Connection` (one pickle each
way per chunk).

Each job runs on one thread of the pool's own executor (send, then read every message of the
job; the event loop only awaits a queue), so a slow engine never blocks the loop and the
default executor is never filled with waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol

from .base import TtsError, TtsRequestError

logger = logging.getLogger(__name__)

WORKER_COMMAND = "from audio_pipeline.tts.worker_pool import serve_worker; serve_worker({fd})"


class Synthesiser(Protocol):
    """What runs inside a worker (picklable: it is sent to the worker when it starts)."""

    def load(self) -> None:
        """Load the model or library (once per worker). Raises on failure."""
        ...

    def synthesize(self, text: str, voice: str | None) -> Iterable[tuple[bytes, int]]:
        """(PCM16 mono bytes, sample rate in Hz) for each chunk of `text`'s audio.
        Raises `TtsRequestError` for a voice or text it refuses."""
        ...


class WorkerCrashed(TtsRequestError):
    """The worker died during this job (it is being replaced)."""


class WorkerHung(TtsRequestError):
    """The worker sent nothing for the job's timeout: killed and replaced."""


class PoolBusy(TtsRequestError):
    """Every worker is busy and the waiting line is full."""


class WorkersDown(TtsError):
    """No worker could be started: the engine cannot run here."""


def serve_worker(fd: int) -> None:
    """A worker's loop (in the worker process): receive the synthesiser, load it, say "ready",
    then answer jobs until the pipe closes (the server closed it, or exited).

    Messages to the parent: ("ready",) | ("failed", why) at start; for each job
    ("audio", pcm, rate)*, then ("done",) | ("refused", why) | ("error", why)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # The server's Ctrl-C is the server's.
    conn = Connection(fd)
    try:
        synthesiser: Synthesiser = conn.recv()
        synthesiser.load()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send(("ready",))
        while True:
            text, voice = conn.recv()
            try:
                for pcm, rate in synthesiser.synthesize(text, voice):
                    conn.send(("audio", pcm, rate))
            except TtsRequestError as exc:
                conn.send(("refused", str(exc)))
            except Exception as exc:  # The engine's error (a send that failed ends below).
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("done",))
    except (EOFError, OSError):
        return  # The server closed the pipe, or exited.


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.conn.close()

    def exit_status(self) -> str:
        """How the worker ended (waits up to 2 s for it to end)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(2)
        return _describe_exit(self.process.returncode)


@dataclass
class _Job:
    """One job's hand-over from its thread to the awaiting coroutine."""

    loop: asyncio.AbstractEventLoop
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    abandoned: bool = False  # The coroutine stopped listening (closed, cancelled).

    def deliver(self, message: tuple) -> None:
        if self.abandoned:
            return
        try:
            self.loop.call_soon_threadsafe(self.messages.put_nowait, message)
        except RuntimeError:  # The loop is closed: nobody is listening any more.
            self.abandoned = True


class WorkerPool:
    """`size` supervised worker processes running `synthesiser` (see the module docstring).

    `timeout`: seconds a job may go without sending anything (also the longest wait for a
    worker); `start_timeout`: seconds a worker may take to load; `max_waiting`: jobs that may
    wait for a worker."""

    def __init__(
        self,
        name: str,
        synthesiser: Synthesiser,
        *,
        size: int,
        timeout: float,
        max_waiting: int,
        start_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.synthesiser = synthesiser
        self.size = max(1, size)
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.start_timeout = start_timeout
        self.restarts = 0  # Workers replaced after a crash or a hang.
        self.start_error = ""  # Why the last worker could not start ("" once one did).
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._live = 0  # Workers started and not yet dead.
        self._waiting = 0
        self._starting = 0
        self._lock = threading.Lock()
        self._started = False
        self._threads = ThreadPoolExecutor(
            3 * self.size + max_waiting + 1, thread_name_prefix=f"tts-{name}"
        )

    # Starting and replacing workers.

    def start(self) -> None:
        """Start the workers (blocking; each loads its model). Raises `WorkersDown` when none
        could start. Called at warm-up; otherwise by the first job."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if not any(list(self._threads.map(lambda _: self._start_one(), range(self.size)))):
            raise WorkersDown(f"{self.name} workers could not start: {self.start_error}")

    def _start_one(self) -> bool:
        """Start one worker and wait until it has loaded; it joins the idle ones."""
        with self._lock:
            self._starting += 1
        try:
            return self._start_and_wait()
        finally:
            with self._lock:
                self._starting -= 1

    def _start_and_wait(self) -> bool:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER_COMMAND.format(fd=theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        except OSError as exc:
            self.start_error = f"could not start a process: {exc}"
            ours.close()
            return False
        finally:
            theirs.close()
        worker = _Worker(process, Connection(ours.detach()))
        try:
            worker.conn.send(self.synthesiser)
            ready = worker.conn.poll(self.start_timeout)
            message = worker.conn.recv() if ready else ("failed", "not ready in time")
        except (EOFError, OSError):
            message = ("failed", f"died while loading ({worker.exit_status()})")
        if message[0] != "ready":
            self.start_error = message[1]
            logger.error("TTS %s: a worker could not start: %s", self.name, message[1])
            worker.kill()
            return False
        self.start_error = ""
        with self._lock:
            self._live += 1
        self._idle.put(worker)
        return True

    def _replace(self, worker: _Worker, why: str) -> None:
        """Kill `worker` and start another in the background."""
        worker.kill()
        with self._lock:
            self._live -= 1
            self.restarts += 1
        logger.warning(
            "TTS %s: worker %s %s; starting another.", self.name, worker.process.pid, why
        )
        self._threads.submit(self._start_one)

    def close(self) -> None:
        """Stop every idle worker (busy ones end with their job's pipe)."""
        with self._lock:
            self._started = False
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._live -= 1
            worker.kill()

    # Jobs.

    def alive(self) -> int:
        return self._live

    def stats(self) -> dict[str, int]:
        """For /readyz: workers wanted, alive, busy, jobs waiting, workers replaced so far."""
        with self._lock:
            busy = self._live - self._idle.qsize()
            return {
                "size": self.size,
                "alive": self._live,
                "busy": max(0, busy),
                "waiting": self._waiting,
                "restarts": self.restarts,
            }

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[tuple[bytes, int]]:
        """(PCM16 bytes, rate) chunks of `text`, as the worker makes them. Raises a
        `TtsRequestError` for this job's failure, `WorkersDown` when no worker can run."""
        job = _Job(asyncio.get_running_loop())
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise PoolBusy(f"{self.name}: every worker is busy and {self._waiting} wait")
            self._waiting += 1
        self._threads.submit(self._run, job, text, voice)
        try:
            while True:
                message = await job.messages.get()
                kind = message[0]
                if kind == "audio":
                    yield message[1], message[2]
                elif kind == "done":
                    return
                else:
                    raise message[1]
        finally:
            job.abandoned = True  # The thread drains the rest (if any) and frees the worker.

    def _run(self, job: _Job, text: str, voice: str | None) -> None:
        """One job, on a pool thread: wait for a worker, send, relay every message."""
        try:
            worker = self._acquire()
        except TtsError as exc:
            job.deliver(("fail", exc))
            return
        finally:
            with self._lock:
                self._waiting -= 1
        if job.abandoned:  # Cancelled while it waited (a barge-in): nothing to synthesise.
            self._idle.put(worker)
            return
        try:
            worker.conn.send((text, voice))
            while True:
                if not worker.conn.poll(self.timeout):
                    self._replace(worker, f"sent nothing for {self.timeout:g} s: killed")
                    job.deliver(
                        ("fail", WorkerHung(f"{self.name} took over {self.timeout:g} s: stopped"))
                    )
                    return
                message = worker.conn.recv()
                if message[0] == "audio":
                    job.deliver(message)
                    continue
                self._idle.put(worker)
                if message[0] == "done":
                    job.deliver(message)
                elif message[0] == "refused":
                    job.deliver(("fail", TtsRequestError(message[1])))
                else:
                    job.deliver(("fail", TtsRequestError(f"{self.name} failed: {message[1]}")))
                return
        except (EOFError, OSError):
            how = worker.exit_status()
            self._replace(worker, f"died ({how})")
            why = f"{self.name} crashed on this text ({how}); it is being restarted"
            job.deliver(("fail", WorkerCrashed(why)))

    def _acquire(self) -> _Worker:
        self.start()
        with self._lock:
            none_left = self._live == 0 and self._starting == 0
        if none_left and not self._start_one():  # Every worker failed to start again.
            raise WorkersDown(f"{self.name} workers could not start: {self.start_error}")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PoolBusy(f"{self.name}: no worker free in {self.timeout:g} s") from None
            if worker.process.poll() is None:
                return worker
            # Killed while idle (out of memory, an operator): not this job's text.
            self._replace(worker, f"died while idle ({_describe_exit(worker.process.returncode)})")
