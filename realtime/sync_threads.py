"""Threads for each WebSocket's synchronous work (ORM calls), so sockets do not queue behind one.

Channels runs `database_sync_to_async` (thread-sensitive `sync_to_async`) on asgiref's single
process-wide thread unless a `ThreadSensitiveContext` is active, and Channels opens none: every
socket's ORM calls then wait in one line (38 % of a loaded server's busy time in our profile, see
docs/performance.md). Django's own ASGI handler opens a context per HTTP request; this module
does the same per WebSocket, with a bound: `WS_SYNC_THREADS` single-thread executors, each socket
pinned to the least-loaded one. A socket's calls keep running one at a time, in order, on one
thread (what thread-sensitive code relies on); different sockets run in parallel, and no more than
`WS_SYNC_THREADS` database connections are opened by sockets at once.

The socket runs in its own task whose context holds the `ThreadSensitiveContext`, entered and
never exited: asgiref refuses thread-sensitive calls from tasks that outlive an exited context, and
a socket's shielded teardown (storing the reply it cut) does outlive the socket's cancellation.
asgiref maps contexts to executors weakly, so the mapping goes when the last such task does.

Each of these threads keeps its database connection for `WS_DB_CONN_MAX_AGE` seconds (health
checked before reuse) instead of opening one per call: with `CONN_MAX_AGE=0` (right for HTTP under
ASGI, where every request gets a new thread) connecting and closing was ~26 % of a loaded
server's busy time in our profile (SQLite: connect, register functions, PRAGMAs). Connections are
bounded by the threads: at most `WS_SYNC_THREADS` per process.

Channels also hops into the socket's thread before *every* message it dispatches, only to call
`close_old_connections()` (`AsyncConsumer.dispatch`); for a voice socket that is 50 hops a
second, each queued behind the other sockets' database work on that thread. Our consumers skip
that hop for `websocket.receive` (`consumers.dispatch`) and these threads call
`close_old_connections()` themselves before each unit of work instead, which is when it matters:
a connection past its age or failing its health check is replaced before the next query.

Source: asgiref.sync.ThreadSensitiveContext(executor=...) (asgiref ≥ 3.10); Django's
`connection_created` signal and `BaseDatabaseWrapper.close_at` / `health_check_enabled`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections
from django.db.backends.signals import connection_created

T = TypeVar("T")
THREAD_PREFIX = "ws-sync"


class _DatabaseThread(ThreadPoolExecutor):
    """One thread whose every call is preceded by Django's `close_old_connections()` (what
    Django does around each HTTP request): obsolete or broken connections are replaced."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any):  # type: ignore[override]
        def call() -> T:
            close_old_connections()
            return fn(*args, **kwargs)

        return super().submit(call)


class SyncThreads:
    """`size` one-thread executors shared by sockets; threads start at their first call or at
    `start()`."""

    def __init__(self, size: int, *, name: str = THREAD_PREFIX) -> None:
        if size < 1:
            raise ValueError("At least one thread is needed.")
        self._executors = [
            _DatabaseThread(max_workers=1, thread_name_prefix=f"{name}-{n}") for n in range(size)
        ]
        self._sockets = [0] * size  # sockets running on each executor now
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._executors)

    def start(self) -> list[Exception]:
        """Start every thread and open its database connection now (a server's warm-up):
        started at first use, the threads and connections of a burst of new sockets were
        created on and beside the event loop, the largest lag of a server's first seconds
        (`Thread.start` waits on the loop for the new thread to run). Returns the errors of
        the threads that could not connect; each socket's first call tries again."""
        from django.db import connection
        from django.db.utils import Error

        def connect() -> Exception | None:
            try:
                connection.ensure_connection()
            except Error as error:
                return error
            return None

        futures = [executor.submit(connect) for executor in self._executors]
        return [error for future in futures if (error := future.result()) is not None]

    def close_connections(self) -> None:
        """Close the database connections the threads keep (tests, before a database is
        dropped; a server shutting down)."""
        from django.db import connections

        wait([executor.submit(connections.close_all) for executor in self._executors])

    def load(self) -> list[int]:
        """Sockets running on each thread now."""
        with self._lock:
            return list(self._sockets)

    async def run(self, socket: Callable[[], Awaitable[T]]) -> T:
        """Await `socket()` in a task of its own whose thread-sensitive calls (and those of the
        tasks it starts) run on the least-loaded thread. Cancelling the caller cancels it."""
        with self._lock:
            slot = min(range(len(self._sockets)), key=self._sockets.__getitem__)
            self._sockets[slot] += 1
        executor = self._executors[slot]

        async def pinned() -> T:
            await ThreadSensitiveContext(executor=executor).__aenter__()  # never exited (above)
            return await socket()

        try:
            return await asyncio.create_task(pinned(), name="ws-socket")
        finally:
            with self._lock:
                self._sockets[slot] -= 1


def _keep_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """A socket thread's new connection lives `WS_DB_CONN_MAX_AGE` s, checked before reuse."""
    if not threading.current_thread().name.startswith(THREAD_PREFIX):
        return
    from django.conf import settings

    max_age = settings.WS_DB_CONN_MAX_AGE
    if max_age > 0:
        connection.close_at = time.monotonic() + max_age
        connection.health_check_enabled = True


connection_created.connect(_keep_connection, weak=False, dispatch_uid="voz-ws-sync-connections")

_shared: SyncThreads | None = None
_shared_lock = threading.Lock()


def socket_threads() -> SyncThreads:
    """The process's pool, sized by `settings.WS_SYNC_THREADS` at first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from django.conf import settings

            _shared = SyncThreads(settings.WS_SYNC_THREADS)
        return _shared
