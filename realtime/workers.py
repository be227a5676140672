"""Several server processes on one port: `python -m realtime.server --workers N …`.

One Python process runs its event loop and most of its work on one core (the GIL), and a turn
costs ~40 ms of it (docs/operations.md), so one process saturates at a few tens of turns a
second, whatever the machine. With `--workers N` (or `WEB_WORKERS`) this supervisor binds the
listening socket once and starts N `realtime.server` processes that all accept on it (each adopts
the inherited descriptor, daphne's `--fd`); the kernel hands each new connection to whichever
process accepts first, so a busy process takes fewer. A WebSocket stays in the process that
accepted it; what crosses processes (observers, groups) goes through the channel layer, which
therefore must be Redis (`REDIS_URL`) when N > 1.

The supervisor forwards SIGTERM / SIGINT to the workers and waits for them (daphne closes its
connections), and starts a worker again when one dies; a worker dying within `CRASH_WINDOW_S` of
its start `MAX_QUICK_CRASHES` times in a row (an import or settings error) stops the server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time

logger = logging.getLogger("realtime.workers")

FD_ENV = "VOZ_LISTEN_FD"  # Set in a worker: the inherited listening socket's descriptor.
WORKER_ENV = "VOZ_WORKER"  # Set in a worker: its number, 1..N (/readyz details.process).
SUPERVISOR_ENV = "VOZ_SUPERVISOR_PID"  # Set in a worker: the supervisor's pid.
CRASH_WINDOW_S = 10.0
MAX_QUICK_CRASHES = 3
STOP_TIMEOUT_S = 15.0
BACKLOG = 2048


class WorkersError(Exception):
    """The options do not allow several workers (the message says why and what to do)."""


def split_workers(argv: list[str], default: int) -> tuple[int, list[str]]:
    """`--workers N` taken out of `argv` (daphne's own arguments stay): (N, the rest). Raises
    WorkersError for N < 1."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int, default=default)
    known, rest = parser.parse_known_args(argv)
    if known.workers < 1:
        raise WorkersError(f"--workers must be 1 or more, not {known.workers}.")
    return known.workers, rest


def listen_address(daphne_args: list[str]) -> tuple[str, int]:
    """The IPv4 host and port daphne's arguments ask for (daphne's defaults 127.0.0.1:8000).
    Raises WorkersError for a Unix socket, a descriptor, endpoint strings or an IPv6 host."""
    from daphne.cli import DEFAULT_HOST, DEFAULT_PORT, CommandLineInterface

    parsed = CommandLineInterface().parser.parse_args(daphne_args)
    if parsed.unix_socket or parsed.file_descriptor is not None or parsed.socket_strings:
        raise WorkersError(
            "--workers binds one TCP port for all workers: use -b HOST -p PORT, not -u, --fd or -e."
        )
    host = (parsed.host or DEFAULT_HOST).strip("[]")
    if ":" in host:
        raise WorkersError("--workers listens on an IPv4 address; put an IPv6 proxy in front.")
    return host, DEFAULT_PORT if parsed.port is None else parsed.port


def check_channel_layer() -> None:
    """Raises WorkersError unless the channel layer reaches across processes (Redis)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    from django.conf import settings

    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if "InMemory" in backend:
        raise WorkersError(
            "Several workers need a channel layer shared by the processes: set REDIS_URL "
            "(docs/operations.md). The in-memory layer only reaches its own process."
        )


def die_with_supervisor() -> None:
    """In a worker: be sent SIGTERM when the supervisor dies, even by SIGKILL (Linux
    `PR_SET_PDEATHSIG`), so no orphan goes on serving the port; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("c")
    if path is None:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(path, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() != int(supervisor):  # It died before prctl took effect.
        os.kill(os.getpid(), signal.SIGTERM)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker adopts (inheritable, non-blocking)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    listener.set_inheritable(True)
    return listener


class Supervisor:
    """Starts `count` workers on `listener`, restarts those that die, stops them on a signal."""

    def __init__(self, count: int, listener: socket.socket, daphne_args: list[str]) -> None:
        self.count = count
        self.listener = listener
        self.daphne_args = daphne_args
        self.workers: dict[int, tuple[subprocess.Popen, float]] = {}  # number → (process, start)
        self.quick_crashes = 0
        self.stopping = False

    def _start(self, number: int) -> None:
        env = {
            **os.environ,
            FD_ENV: str(self.listener.fileno()),
            WORKER_ENV: str(number),
            SUPERVISOR_ENV: str(os.getpid()),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "realtime.server", *self.daphne_args],
            env=env,
            pass_fds=(self.listener.fileno(),),
        )
        self.workers[number] = (process, time.monotonic())
        logger.info("Worker %d started (pid %d)", number, process.pid)

    def _signal(self, signum: int, _frame) -> None:
        self.stopping = True
        for process, _ in self.workers.values():
            if process.poll() is None:
                process.send_signal(signum)

    def run(self) -> int:
        """Runs until a signal (exit status 0) or a crash loop (1)."""
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for number in range(1, self.count + 1):
            self._start(number)
        while not self.stopping:
            time.sleep(0.2)
            for number, (process, started) in list(self.workers.items()):
                status = process.poll()
                if status is None or self.stopping:
                    continue
                quick = time.monotonic() - started < CRASH_WINDOW_S
                self.quick_crashes = self.quick_crashes + 1 if quick else 0
                logger.error("Worker %d (pid %d) exited with %s", number, process.pid, status)
                if self.quick_crashes >= MAX_QUICK_CRASHES:
                    logger.error("Workers keep dying at start; stopping the server.")
                    self._signal(signal.SIGTERM, None)
                    self._wait()
                    return 1
                self._start(number)
        self._wait()
        return 0

    def _wait(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process, _ in self.workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("Worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def serve(count: int, daphne_args: list[str]) -> int:
    """Bind once and supervise `count` workers (see the module docstring). Raises WorkersError."""
    host, port = listen_address(daphne_args)
    check_channel_layer()
    listener = bind(host, port)
    logger.warning("Serving on %s:%d with %d workers", host, port, count)
    return Supervisor(count, listener, daphne_args).run()
