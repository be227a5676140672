"""One credential re-check for all of a process's open sockets, every `WS_AUTH_RECHECK_SECONDS`.

A socket stays open only while the credential it was opened with stands (token not revoked,
user active, browser session still signed in; docs/security.md). Each socket used to ask the
database itself every 5 s: 1,000 idle sockets made 200 queries a second, and the per-token delay
of 1,000 typed sessions doubled (100 ms against 46 ms at p95 without the checks,
docs/performance.md). Here one task per event loop asks once for every token socket
(`accounts.selectors.tokens_still_active`, one query) and per browser session for the others
(few: browsers), then closes the sockets whose credential fell.

A failing check (database outage) keeps every socket and tries again at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts import selectors as account_selectors

logger = logging.getLogger(__name__)

Refuse = Callable[[], Awaitable[None]]


class CredentialWatch:
    """The sockets of one event loop: `add(key, scope, user_id, refuse)`, `discard(key)`."""

    def __init__(self) -> None:
        self._sockets: dict[Any, tuple[dict, Any, Refuse]] = {}
        self._task: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, key: Any, scope: dict, user_id: Any, refuse: Refuse) -> None:
        self._sockets[key] = (scope, user_id, refuse)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="credential-watch"
            )

    def discard(self, key: Any) -> None:
        self._sockets.pop(key, None)

    async def _run(self) -> None:
        while self._sockets:
            await asyncio.sleep(max(0.05, settings.WS_AUTH_RECHECK_SECONDS))
            watched = dict(self._sockets)
            try:
                fallen = await sync_to_async(credentials_fallen)(
                    [(key, scope, user_id) for key, (scope, user_id, _) in watched.items()]
                )
            except Exception as exc:  # An outage: keep every socket, try again next time.
                logger.warning("Could not re-check the sockets' credentials: %s", exc)
                continue
            for key in fallen:
                if self._sockets.pop(key, None) is not None:
                    await watched[key][2]()


def credentials_fallen(sockets: list[tuple[Any, dict, Any]]) -> set[Any]:
    """The keys of the sockets whose credential no longer stands (blocking: ORM). Token sockets
    are checked in one query; session sockets one session each."""
    tokens = {
        key: scope.get("auth_token_id")
        for key, scope, _ in sockets
        if scope.get("auth_method") == "token"
    }
    active = account_selectors.tokens_still_active(
        token_ids=[t for t in tokens.values() if t is not None]
    )
    fallen = {key for key, token_id in tokens.items() if token_id not in active}
    for key, scope, user_id in sockets:
        if key in tokens:
            continue
        session = scope.get("session")
        if not account_selectors.session_still_signed_in(
            session_key=getattr(session, "session_key", None), user_id=user_id
        ):
            fallen.add(key)
    return fallen


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CredentialWatch] = (
    weakref.WeakKeyDictionary()
)


def credential_watch() -> CredentialWatch:
    """The running event loop's watch."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = CredentialWatch()
    return watch
