"""Subprocesses (espeak-ng) are waited for on the event loop, not by a thread each."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

import pytest

from realtime.child_watcher import use_pidfd_child_watcher


@pytest.fixture
def restore_watcher():
    yield
    if sys.version_info < (3, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_child_watcher().close()
            asyncio.set_child_watcher(None)


async def test_children_are_reaped_without_a_thread_each(restore_watcher):
    installed = use_pidfd_child_watcher()
    assert installed == (sys.version_info < (3, 12))  # 3.12 does this by itself
    before = {t.name for t in threading.enumerate()}
    processes = [
        await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}") for code in (0, 3, 7)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 10)
    assert codes == [0, 3, 7]
    started = {t.name for t in threading.enumerate()} - before
    assert not [name for name in started if "waitpid" in name], started
