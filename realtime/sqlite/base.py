"""Django's SQLite backend with write transactions queued inside the process.

SQLite lets one connection write at a time. A connection that finds the write lock taken
sleeps and tries again (SQLite's default busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25,
50, 50, then 100 ms at a time, up to the busy timeout), so with many writers the lock is often
free while they sleep. At 200 voice sessions on 16 socket threads, `BEGIN IMMEDIATE` waits were
7 % of the server's profile samples and storing the user's message took 1.6 s at p50
(docs/operations.md).

Here a write transaction first takes a lock per database file inside the process; it wakes the
next writer as soon as the previous one commits or rolls back. SQLite's own lock and busy
timeout still apply between processes. If the process lock is not free within the busy timeout
the transaction goes on to SQLite's lock anyway, which then fails as it always did ("database
is locked"), never hangs.

Source: sqlite3.c `sqliteDefaultBusyCallback` (the delays); Django's
`django.db.backends.sqlite3.base.DatabaseWrapper._start_transaction_under_autocommit`, which
every outermost `atomic()` block calls on SQLite.
"""

from __future__ import annotations

import threading

from django.db.backends.sqlite3 import base

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_lock(name: str) -> threading.Lock:
    """The process's write lock for the database `name` (its settings NAME)."""
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    _write_lock_held: threading.Lock | None = None

    def _start_transaction_under_autocommit(self) -> None:
        lock = write_lock(str(self.settings_dict["NAME"]))
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5.0))
        held = lock.acquire(timeout=max(timeout, 0.0))
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            if held:
                lock.release()
            raise
        self._write_lock_held = lock if held else None

    def _release_write_lock(self) -> None:
        lock, self._write_lock_held = self._write_lock_held, None
        if lock is not None:
            lock.release()

    def _commit(self) -> None:
        super()._commit()  # A failed commit keeps the lock until the rollback that follows.
        self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_write_lock()
