"""Database writes that survive a short outage: retried with backoff, then reported.

A dropped connection (PostgreSQL restarted, a network blip) raises `OperationalError` or
`InterfaceError`; the broken connection is closed so the next attempt opens a fresh one.
Each attempt runs in its own transaction, so a retry never repeats half a write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT = (OperationalError, InterfaceError)


def with_db_retry(write: Callable[[], T], *, what: str) -> T:
    """Run `write()` (sync, in a worker thread); retry transient database errors.

    Tries `CONVERSATION_STORE_RETRIES + 1` times, waiting `CONVERSATION_STORE_BACKOFF` seconds
    before the first retry and doubling; the last error is re-raised.
    """
    retries = max(0, settings.CONVERSATION_STORE_RETRIES)
    delay = settings.CONVERSATION_STORE_BACKOFF
    for attempt in range(retries + 1):
        try:
            return write()
        except TRANSIENT as exc:
            if connection.in_atomic_block:
                raise  # An outer transaction owns the connection: it must fail as a whole.
            connection.close()
            if attempt >= retries:
                raise
            logger.warning(
                "Storing %s failed (%s); retry %d/%d in %.2f s.",
                what,
                type(exc).__name__,
                attempt + 1,
                retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
