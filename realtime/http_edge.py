"""The HTTP door's input check: a request carrying text we could not store is refused up front.

Path and query string of `/api/` requests are checked for NUL characters and unpaired
surrogates (realtime.text_safety). A bad request gets the API's JSON error (HTTP 422
`validation_error`, naming the field) before any view, so no endpoint can fail on it later with
a 500. Bodies and form fields are checked by the API's parser (realtime.json_body), whatever
their `Content-Type`. Other pages (admin, login) use Django forms, which refuse NUL themselves;
undecodable form bytes become U+FFFD there.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from .text_safety import unsafe_reason

API_PREFIX = "/api/"


def refusal(request: HttpRequest) -> HttpResponse | None:
    """The 422 answer for a request with unsafe input, or None when it may go on."""
    if not request.path.startswith(API_PREFIX):
        return None
    if reason := unsafe_reason(request.path):
        return _error("path", reason)
    for key, values in request.GET.lists():
        if reason := unsafe_reason(key):
            return _error("query", reason)
        for value in values:
            if reason := unsafe_reason(value):
                return _error(key, reason)
    # Bodies are checked where they are parsed (realtime.json_body): ninja parses a body as
    # JSON whatever its Content-Type, so a header here would prove nothing.
    return None


def _error(field: str, message: str) -> JsonResponse:
    detail = f"{field}: {message}" if field else message
    return JsonResponse(
        {
            "detail": detail,
            "code": "validation_error",
            "errors": [{"field": field, "message": message}],
        },
        status=422,
    )


class TextSafetyMiddleware:
    """Django middleware (sync and async) around `refusal`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        return refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest):
        return refusal(request) or await self.get_response(request)
