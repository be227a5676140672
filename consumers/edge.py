"""The WebSocket edge: ASGI middleware in front of every socket (voice, observe, ping).

It makes five promises that no consumer has to remember:

- **Refusals explain themselves.** A handshake refused before `accept` (bad origin 4403, no or bad
  credentials 4401, unknown instance 4404) is accepted, answered with one `error` event
  (`fatal: true`) and closed with that code, instead of daphne's bare HTTP 403. A failure while
  the handshake is checked (the database is down) becomes `unavailable` and close code 4503
  ("try again later") instead of an HTTP 500; a path that is no endpoint gets `not_found` and
  4404 (consumers/not_found.py), so a client does not retry it.
- **Every close reaches the client.** daphne can send only 1000 and 3000-4999: a consumer's
  close code outside them (1011, 1013) is sent as the application code that means the same
  (realtime/close_codes.py). A consumer that fails after accepting gets `internal_error` and
  4500.
- **Frames that would break a consumer never reach it.** A text frame over WS_MAX_FRAME_BYTES
  (`frame_too_large`), JSON nested deeper than MAX_JSON_DEPTH (`bad_json`) or a string holding NUL
  or an unpaired surrogate (`invalid_text`, with the field) is answered with a non-fatal `error`
  event and dropped; the session goes on.
- **Credentials are re-checked while the socket lives.** Every WS_AUTH_RECHECK_SECONDS the token
  (revoked? user deactivated?) or the browser session (logged out? password changed?) is looked
  up again, for all of the process's sockets at once (consumers/credential_watch.py: one query
  for every token socket); when it is gone the socket gets `unauthorized` and close code 4401. A
  database error during the re-check keeps the sockets (it is logged), so an outage does not
  hang up live calls.
- **Sockets do not queue behind each other's database calls.** Each socket's thread-sensitive
  calls run on one of WS_SYNC_THREADS threads (realtime/sync_threads.py), not on the process's
  single one.
- **A gone client is not an error.** Messages sent after the close started are dropped quietly,
  never logged as "Attempt to send on a closed protocol".
"""

from __future__ import annotations

import logging
from typing import Any

from autobahn.exception import Disconnected
from django.conf import settings

from realtime import close_codes, strict_json
from realtime.sync_threads import socket_threads
from realtime.text_safety import find_unsafe

from .auth import EDGE_KEY, accepted_subprotocol, authenticated_user
from .credential_watch import CredentialWatch, credential_watch

logger = logging.getLogger(__name__)

CLOSE_SERVER_ERROR = close_codes.SERVER_ERROR
CLOSE_TRY_AGAIN_LATER = close_codes.UNAVAILABLE
CLOSE_UNAUTHORIZED = close_codes.UNAUTHORIZED
CLOSE_FORBIDDEN = close_codes.FORBIDDEN_ORIGIN

REFUSALS: dict[int, tuple[str, str]] = {
    CLOSE_UNAUTHORIZED: (
        "unauthorized",
        "Sign in, or send a valid API token (?token= or bearer.<token>).",
    ),
    CLOSE_FORBIDDEN: (
        "forbidden_origin",
        "This page's origin may not open sockets on this server.",
    ),
    close_codes.NOT_FOUND: ("not_found", "No such instance (or it is not yours)."),
    close_codes.TOO_MANY_SESSIONS: (
        "too_many_sessions",
        "This user has the most sockets of this kind open at once "
        "(WS_MAX_SESSIONS_PER_USER voice sessions, as many observers); close one, then retry.",
    ),
    CLOSE_TRY_AGAIN_LATER: ("unavailable", "The server cannot serve sockets right now; retry."),
    CLOSE_SERVER_ERROR: ("internal_error", "The server failed; reconnect to start over."),
}


def error_frame(code: str, message: str, *, fatal: bool, **extra: Any) -> dict[str, Any]:
    event = {"type": "error", "code": code, "message": message, "fatal": fatal, **extra}
    return {"type": "websocket.send", "text": strict_json.dumps(event)}


def frame_problem(text: str) -> dict[str, Any] | None:
    """The `error` event for a text frame no consumer should see, or None when it may pass."""
    limit = settings.WS_MAX_FRAME_BYTES
    if len(text) > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
        return error_frame(
            "frame_too_large",
            f"Text frame of {len(text.encode('utf-8', 'surrogatepass'))} bytes dropped; "
            f"the limit is {limit}.",
            fatal=False,
        )
    try:
        message = strict_json.loads(text)  # Measures the nesting before it parses.
    except strict_json.JsonTooDeep as exc:
        return error_frame("bad_json", exc.message, fatal=False)
    except ValueError:
        return None  # Not (strict) JSON: the consumer answers `bad_json` itself.
    found = find_unsafe(message)
    if found is None:
        return None
    field, reason = found
    return error_frame("invalid_text", f"{field or 'message'}: {reason}", fatal=False, field=field)


class _Socket:
    """One connection's view of the edge: what was sent, and its credential re-check."""

    def __init__(self, scope: dict, receive, send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.accepted = False
        self.closed = False
        self.watched: CredentialWatch | None = None  # The re-check this socket is in.
        self.auth_scope: dict | None = None  # The scope after authentication (consumers.auth).
        scope[EDGE_KEY] = self

    async def receive(self) -> dict[str, Any]:
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closed = True
                self._stop_recheck()
            elif (
                kind == "websocket.receive"
                and message.get("text") is not None
                and (problem := frame_problem(message["text"])) is not None
            ):
                await self.send(problem)
                continue
            return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.closed:
            return  # The client is gone or the close has started: nothing more goes out.
        if kind == "websocket.close" and not self.accepted:
            await self.refuse(message.get("code") or CLOSE_FORBIDDEN, message.get("reason"))
            return
        if kind == "websocket.close":
            message = {**message, "code": close_codes.sendable(message.get("code"))}
            self.closed = True
            self._stop_recheck()
        try:
            await self._send(message)
        except Disconnected:
            self.closed = True  # The client closed between our check and the write.
            return
        if kind == "websocket.accept":
            self.accepted = True
            self._start_recheck()

    async def refuse(self, code: int, message: str | None = None) -> None:
        """Accept (so the client can read why), send the `error` event, close with `code`."""
        name, default = REFUSALS.get(code, ("refused", "The server refused this socket."))
        if not self.accepted:
            await self.send(
                {"type": "websocket.accept", "subprotocol": accepted_subprotocol(self.scope)}
            )
        await self.send(error_frame(name, message or default, fatal=True))
        await self.send({"type": "websocket.close", "code": code})

    # Credential re-check ------------------------------------------------------------------

    def _start_recheck(self) -> None:
        user = authenticated_user(self.auth_scope or {})
        if user is not None and settings.WS_AUTH_RECHECK_SECONDS > 0:
            self.watched = credential_watch()
            self.watched.add(self, self.auth_scope or {}, user.pk, self._signed_out)

    def _stop_recheck(self) -> None:
        if self.watched is not None:
            self.watched.discard(self)
            self.watched = None

    async def _signed_out(self) -> None:
        await self.refuse(
            CLOSE_UNAUTHORIZED,
            "Signed out: the token was revoked, the user deactivated or the session ended.",
        )

    async def finish(self) -> None:
        self._stop_recheck()


class WebSocketEdge:
    """ASGI middleware: wraps `receive` and `send` of every WebSocket connection (see above)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        socket = _Socket(scope, receive, send)
        try:
            return await socket_threads().run(
                lambda: self.inner(scope, socket.receive, socket.send)
            )
        except Exception as exc:
            if socket.accepted:
                logger.exception("WebSocket consumer failed")
                await socket.refuse(CLOSE_SERVER_ERROR)
            else:  # Checking the handshake failed (database or channel layer down).
                logger.warning("WebSocket handshake could not be checked: %r", exc)
                await socket.refuse(CLOSE_TRY_AGAIN_LATER)
            return None
        finally:
            await socket.finish()
