"""SQLite write transactions queue on a lock in the process (realtime/sqlite/base.py), on a
file database with the project's real settings (the test database is in memory)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.db import connection

from tests.servers import ROOT, sqlite_file_env

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock")


def test_writers_queue_in_the_process_and_every_end_of_a_transaction_frees_the_lock(tmp_path):
    env = sqlite_file_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tests.sqlite_write_order"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["engine"] == "realtime.sqlite"
    assert seen["held_in_transaction"] is True
    assert seen["free_after_commit"] and seen["free_after_rollback"] and seen["free_after_close"]
    # The second writer waited for the first (one writer at a time) and began when it
    # committed, woken by the release rather than by SQLite's busy handler's next look (sleeps
    # of up to 100 ms: ~85 ms late after this 240 ms transaction; 3 ms with the lock).
    assert seen["order"] == ["first committing", "second began"]
    assert seen["second_began_after_ms"] < 50
    assert seen["names"] == ["First", "Held", "Second"]
    assert seen["free_at_end"]
