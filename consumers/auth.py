"""WebSocket doors: an origin check and authentication (session cookie or API token).

- A browser always sends `Origin`; its scheme, host and port must be the page's own origin (the
  handshake's `Host`, when that host is in ALLOWED_HOSTS, with `http` for ws:// and `https` for
  wss://) or one listed in WS_ALLOWED_ORIGINS / CSRF_TRUSTED_ORIGINS; else the handshake is
  refused with close code 4403.
- Native clients (games, kiosks) often send no `Origin`; they are let through the origin check
  but may authenticate only with a token, never with a cookie (no cookie riding without Origin).
- A token arrives as `?token=...` or as the subprotocol `bearer.<token>` (then the client should
  also offer `voz.v1`, which the server selects, so the token is never echoed back).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from accounts.services import token_check
from realtime import close_codes

SUBPROTOCOL = "voz.v1"
BEARER_PREFIX = "bearer."
CLOSE_FORBIDDEN_ORIGIN = close_codes.FORBIDDEN_ORIGIN
DEFAULT_PORTS = {"http": 80, "https": 443}
EDGE_KEY = "voz.edge"  # consumers.edge puts its per-socket state here.


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def normalized_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, default ports filled in; None when it is not one."""
    try:
        parsed = urlsplit(origin.strip())
        port = parsed.port
    except ValueError:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return None
    return parsed.scheme, parsed.hostname.lower(), port or DEFAULT_PORTS[parsed.scheme]


def own_origin(scope: dict) -> tuple[str, str, int] | None:
    """The origin of a page served by this server for this handshake: its `Host`, with
    `https` when the socket is wss:// (or a trusted proxy says so), else `http`."""
    host = header(scope, b"host")
    if not host:
        return None
    own = normalized_origin(f"{_page_scheme(scope)}://{host}")
    if own is None or not validate_host(_bracketed(own[1]), settings.ALLOWED_HOSTS):
        return None
    return own


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _page_scheme(scope: dict) -> str:
    if scope.get("scheme") == "wss":
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        if header(scope, name) == proxy[1]:
            return "https"
    return "http"


def origin_allowed(origin: str, scope: dict | None = None) -> bool:
    """Scheme, host and port must match the page's own origin or a configured one exactly."""
    wanted = normalized_origin(origin)
    if wanted is None:
        return False
    configured = [*settings.WS_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]
    if any(normalized_origin(item) == wanted for item in configured):
        return True
    return scope is not None and own_origin(scope) == wanted


def token_from_scope(scope: dict) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    for protocol in scope.get("subprotocols", ()):
        if protocol.startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :]
    return None


def authenticated_user(scope: dict):
    """The connection's active user, or None (the consumer then closes with 4401)."""
    user = scope.get("user")
    return user if user is not None and user.is_authenticated and user.is_active else None


def accepted_subprotocol(scope: dict) -> str | None:
    """The subprotocol to accept: `voz.v1` when offered, never the token-bearing one."""
    offered = scope.get("subprotocols", ())
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


class WebSocketOriginValidator(BaseMiddleware):
    """Refuse a handshake whose Origin is not ours (4403); let Origin-less native clients in."""

    async def __call__(self, scope, receive, send):
        origin = header(scope, b"origin")
        scope["origin"] = origin
        if origin is not None and not origin_allowed(origin, scope):
            while (await receive())["type"] != "websocket.connect":
                pass
            # Closed before accept: consumers.edge turns this into an error event and the code.
            await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN_ORIGIN})
            return None
        return await self.inner(scope, receive, send)


class _TokenOrSessionAuth(AuthMiddleware):
    async def resolve_scope(self, scope):
        token = token_from_scope(scope)
        if token:
            scope["auth_method"] = "token"
            found = await database_sync_to_async(token_check)(token)
            scope["auth_token_id"] = found.pk if found else None
            scope["user"]._wrapped = found.user if found else AnonymousUser()
        elif scope.get("origin"):
            scope["auth_method"] = "session"
            await super().resolve_scope(scope)
        else:
            scope["auth_method"] = None
            scope["user"]._wrapped = AnonymousUser()
        if (edge := scope.get(EDGE_KEY)) is not None:
            edge.auth_scope = scope  # Middlewares copy the scope; the edge re-checks this one.


def WebSocketAuthMiddleware(inner):
    """Cookie and session support, then token-or-session authentication into scope['user']."""
    return CookieMiddleware(SessionMiddleware(_TokenOrSessionAuth(inner)))
