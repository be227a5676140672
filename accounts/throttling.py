"""API rate limit per caller: its user when authenticated (token or session), else its IP."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    """`API_RATE_LIMIT` requests per caller (e.g. "600/min"; empty turns it off).

    The rate is read on each request so a settings change applies at once. Counts live in
    Django's cache: per process with the default local-memory cache.
    """

    scope = "caller"

    def __init__(self) -> None:
        self.rate = None
        self.num_requests, self.duration = None, None

    def allow_request(self, request: HttpRequest) -> bool:
        self.rate = settings.API_RATE_LIMIT or None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str:
        caller = getattr(getattr(request, "auth", None), "pk", None)
        ident = f"user-{caller}" if caller is not None else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
