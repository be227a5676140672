"""The WebSocket close codes the server sends, and whether a client should retry after each
(the table in docs/protocol.md).

daphne's WebSocket library (autobahn) lets an application send only 1000 or a code from
3000-4999: any other code (1011 "server error", 1013 "try again later") raised inside daphne and
the socket stayed open with no close frame at all. So the server's own errors use application
codes shaped like HTTP statuses (4500, 4503), next to 4401/4403/4404/4408/4409/4429. 1009 is sent by
daphne's protocol layer itself (realtime/transport.py), never by the application.
"""

from __future__ import annotations

NORMAL = 1000  # `session.end`, or the client closed.
MESSAGE_TOO_BIG = 1009  # A message over daphne's --websocket-max-message-size.
UNAUTHORIZED = 4401  # No or bad credentials, or they were revoked.
FORBIDDEN_ORIGIN = 4403  # A browser page of another origin.
NOT_FOUND = 4404  # No such endpoint, or instance or conversation (or it was deleted).
TIMEOUT = 4408  # Idle too long, or the session's time is up.
TOO_MANY_SESSIONS = 4409  # The user has WS_MAX_SESSIONS_PER_USER sockets of this kind open.
SLOW_CLIENT = 4429  # The client does not read what it is sent.
SERVER_ERROR = 4500  # The server failed (a bug); a new connection starts over.
UNAVAILABLE = 4503  # The server cannot serve sockets right now (database down): retry later.

# A client reconnects (with back-off) after these, and after a connection lost without a close
# frame (1006); after any other code it stops until its user acts again.
RETRY = frozenset({SERVER_ERROR, UNAVAILABLE, SLOW_CLIENT, TOO_MANY_SESSIONS})

# Codes autobahn refuses from an application, as the code that means the same and can be sent.
_SENDABLE = {1001: NORMAL, 1011: SERVER_ERROR, 1012: UNAVAILABLE, 1013: UNAVAILABLE}


def sendable(code: int | None) -> int | None:
    """`code` as daphne can send it: unchanged when autobahn accepts it (None: 1000), else the
    application code that means the same (1011 → 4500, 1013 → 4503; any other → 4500)."""
    if code is None or code == NORMAL or 3000 <= code <= 4999:
        return code
    return _SENDABLE.get(code, SERVER_ERROR)
