"""WebSocket doors: an origin check and authentication (session cookie or API token).

- A browser always sends `Origin`; it must name one of ALLOWED_HOSTS (or WS_ALLOWED_ORIGINS),
  else the handshake is refused.
- Native clients (games, kiosks) often send no `Origin`; they are let through the origin check
  but may authenticate only with a token, never with a cookie (no cookie riding without Origin).
- A token arrives as `?token=...` or as the subprotocol `bearer.<token>` (then the client should
  also offer `voz.v1`, which the server selects, so the token is never echoed back).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import is_same_domain, split_domain_port

from accounts.services import token_authenticate

SUBPROTOCOL = "voz.v1"
BEARER_PREFIX = "bearer."


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str) -> bool:
    parsed = urlparse(origin)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return False
    explicit = getattr(settings, "WS_ALLOWED_ORIGINS", [])
    if origin.rstrip("/") in explicit:
        return True
    host, _port = split_domain_port(parsed.netloc)
    hosts = ["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else settings.ALLOWED_HOSTS
    return any(pattern == "*" or is_same_domain(host, pattern) for pattern in hosts)


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
    """Refuse a handshake whose Origin is not ours; let Origin-less native clients through."""

    async def __call__(self, scope, receive, send):
        origin = header(scope, b"origin")
        scope["origin"] = origin
        if origin is not None and not origin_allowed(origin):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.inner(scope, receive, send)


class _TokenOrSessionAuth(AuthMiddleware):
    async def resolve_scope(self, scope):
        token = token_from_scope(scope)
        if token:
            scope["auth_method"] = "token"
            scope["user"]._wrapped = await database_sync_to_async(_user_for_token)(token)
        elif scope.get("origin"):
            scope["auth_method"] = "session"
            await super().resolve_scope(scope)
        else:
            scope["auth_method"] = None
            scope["user"]._wrapped = AnonymousUser()


def _user_for_token(token: str):
    return token_authenticate(token) or AnonymousUser()


def WebSocketAuthMiddleware(inner):
    """Cookie and session support, then token-or-session authentication into scope['user']."""
    return CookieMiddleware(SessionMiddleware(_TokenOrSessionAuth(inner)))
