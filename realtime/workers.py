"""Several server processes on one port: `python -m realtime.server --workers N …`.

One Python process runs its event loop and most of its work on one core (the GIL), and a turn
costs 22-45 ms of it (docs/operations.md), so one process saturates at a few tens of turns a
second, whatever the machine. With `--workers N` (or `WEB_WORKERS`) this supervisor binds the
listening sockets and starts N `realtime.server` processes that accept on them (each adopts an
inherited descriptor, daphne's `--fd`; on Linux one `SO_REUSEPORT` socket per worker, which the
kernel fills evenly). A WebSocket stays in the process that accepted it; what crosses processes
(observers, groups) goes through the channel layer, which therefore must be Redis (`REDIS_URL`)
when N > 1.

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


def _listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    listener.set_inheritable(True)
    return listener


def bind(host: str, port: int, count: int) -> list[socket.socket]:
    """The listening socket of each worker (inheritable, non-blocking), one per worker.

    On Linux each worker gets a socket of its own on the same port (`SO_REUSEPORT`), and the
    kernel spreads new connections evenly over them by a hash of the client's address. One
    shared socket would go to whichever worker wakes first, and Twisted accepts up to 100
    connections per wake-up, so a burst of handshakes would land on one worker. Elsewhere they
    share one socket."""
    if count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        return [_listener(host, port, reuse_port=True) for _ in range(count)]
    return [_listener(host, port, reuse_port=False)] * count


class Supervisor:
    """Starts a worker on each of `listeners`, restarts those that die (on the same socket,
    which the supervisor keeps open: connections wait in its queue meanwhile), stops them on a
    signal."""

    def __init__(self, listeners: list[socket.socket], daphne_args: list[str]) -> None:
        self.listeners = listeners
        self.daphne_args = daphne_args
        self.workers: dict[int, tuple[subprocess.Popen, float]] = {}  # number → (process, start)
        self.quick_crashes = 0
        self.stopping = False

    def _start(self, number: int) -> None:
        listener = self.listeners[number - 1]
        env = {
            **os.environ,
            FD_ENV: str(listener.fileno()),
            WORKER_ENV: str(number),
            SUPERVISOR_ENV: str(os.getpid()),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "realtime.server", *self.daphne_args],
            env=env,
            pass_fds=(listener.fileno(),),
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
        for number in range(1, len(self.listeners) + 1):
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
    """Bind the port and supervise `count` workers on it (see the module docstring). Raises
    WorkersError."""
    host, port = listen_address(daphne_args)
    check_channel_layer()
    listeners = bind(host, port, count)
    logger.warning("Serving on %s:%d with %d workers", host, port, count)
    return Supervisor(listeners, daphne_args).run()
