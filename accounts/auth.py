"""Authentication for the REST API: `Authorization: Bearer <token>` or the browser's session.

Ninja runs these sync checks through `sync_to_async` for async views, so the ORM lookup never
runs on the event loop.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from .services import token_authenticate


class BearerTokenAuth(HttpBearer):
    """API tokens for scripts, games and kiosks."""

    def authenticate(self, request: HttpRequest, token: str):
        return token_authenticate(token)


class ActiveSessionAuth(SessionAuth):
    """Django's session login (CSRF-checked on unsafe methods), for the browser page."""

    def authenticate(self, request: HttpRequest, key: str | None):
        user = request.user
        return user if user.is_authenticated and user.is_active else None


api_auth = [BearerTokenAuth(), ActiveSessionAuth()]
