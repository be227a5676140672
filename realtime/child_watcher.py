"""Wait for subprocesses (espeak-ng's synthesis) without a thread each, on Python 3.11.

Python 3.11's asyncio watches each child process from a thread of its own
(`ThreadedChildWatcher`); a loaded server synthesising with espeak-ng had ~100 such threads alive
at once (py-spy, docs/operations.md), each one more contender for the GIL. Linux ≥ 5.3 can watch
a child through a pidfd on the event loop instead, which is what Python 3.12 does by default.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings


def use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Install asyncio's `PidfdChildWatcher` on `loop` (default: the current one) where Python
    < 3.12 would use a thread per child; True when installed. Call from the loop's thread."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # A kernel without pidfds (< 5.3) or a sandbox refusing the call.
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop or asyncio.get_event_loop())
        asyncio.set_child_watcher(watcher)
    return True
