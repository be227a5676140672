"""`/healthz` answered on the event loop itself, before Django.

A liveness probe asks one thing: is this process serving? Through Django every request first
runs the `request_started` signal's sync receivers in a thread of its own; under load (hundreds
of sockets, the database threads and TTS subprocesses all wanting the GIL) that hop alone took
seconds while the event loop itself lagged 0.3 s at most (docs/operations.md), so the probe
measured the thread pool, not the server, and an orchestrator would have restarted a healthy
process. Answered here, it costs one event-loop turn and shows exactly the loop's health. The
Django view (`realtime.health.healthz`) stays for `reverse()` and the test client.
"""

from __future__ import annotations

from typing import Any

from asgiref.typing import ASGI3Application as Asgi

PATH = "/healthz"
BODY = b'{"status": "ok"}'


def liveness(app: Asgi) -> Asgi:
    """ASGI middleware: GET or HEAD `/healthz` → 200 `{"status": "ok"}` (JSON, not cached);
    anything else goes on to `app`."""

    async def wrapped(scope: dict, receive, send) -> Any:
        if scope["type"] != "http" or scope.get("path") != PATH:
            return await app(scope, receive, send)
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            return await _answer(
                send,
                405,
                b'{"detail": "Use GET or HEAD.", "code": "method_not_allowed"}',
                method,
                allow=True,
            )
        return await _answer(send, 200, BODY, method)

    return wrapped


async def _answer(send, status: int, body: bytes, method: str, *, allow: bool = False) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
