"""The HTTP door's input check: a request carrying text we could not store is refused up front.

Path, query string and JSON bodies of `/api/` requests are checked for NUL characters and
unpaired surrogates (realtime.text_safety) and JSON nesting deeper than MAX_JSON_DEPTH. A bad
request gets the API's JSON error (HTTP 422 `validation_error`, naming the field) before any
view, so no endpoint can fail on it later with a 500. Other pages (admin, login) use Django forms,
which refuse NUL themselves; undecodable form bytes become U+FFFD there.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from .text_safety import MAX_JSON_DEPTH, find_unsafe, json_depth_exceeds, unsafe_reason

API_PREFIX = "/api/"
_FORMS = {"multipart/form-data", "application/x-www-form-urlencoded"}
_RAW = ("audio/", "application/octet-stream")


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
    if request.content_type in _FORMS or request.content_type.startswith(_RAW):
        return None  # Forms are checked by their fields; audio is POST /api/stt's.
    try:
        body = request.body
    except RequestDataTooBig:
        return None  # The view answers 413.
    if not body:
        return None
    if json_depth_exceeds(body):
        return _error("", f"JSON nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        data = json.loads(body)
    except ValueError:  # UnicodeDecodeError included.
        return None  # The API answers malformed JSON itself (400 bad_request).
    if not isinstance(data, dict):
        return _error("", "The body must be a JSON object.")
    found = find_unsafe(data)
    return _error(*found) if found else None


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
