"""Numbers too long to read: a JSON body with an integer of more digits than Python converts.

Python refuses to turn a string of more than `sys.get_int_max_str_digits()` digits (4,300) into
an int (a guard against quadratic-time conversion), so `json.loads` raises ValueError on such a
number and django-ninja answered a bare "Cannot parse request body". Here such a body gets a
clear 400 `number_too_long` on every `/api/` route before any view. Query strings, path
parameters and form fields need nothing: pydantic and Django's form fields answer those with
their own 422 / form error.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"


def max_digits() -> int:
    """The longest integer Python converts from text (0: no limit)."""
    return sys.get_int_max_str_digits()


def number_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 400 answer for an API JSON body holding a number Python cannot read, or None."""
    limit = max_digits()
    if not limit or not request.path.startswith(API_PREFIX) or request.method == "GET":
        return None
    if request.content_type == "multipart/form-data":
        return None  # Parsed as a form (streamed to disk), never as JSON.
    try:
        body = request.body
    except RequestDataTooBig:
        return None  # The view answers 413.
    if not re.search(rb"\d{%d}" % (limit + 1), body):
        return None  # Cheap: no run of digits that long anywhere (the usual case).
    try:
        json.loads(body)
    except ValueError as exc:
        if "digits" not in str(exc):
            return None  # Malformed JSON: the API answers it (400 bad_request).
        return JsonResponse(
            {
                "detail": f"A number in the JSON body has more than {limit} digits.",
                "code": "number_too_long",
                "errors": [{"field": "", "message": f"Numbers have at most {limit} digits."}],
            },
            status=400,
        )
    return None


class JsonNumbersMiddleware:
    """Django middleware (sync and async) around `number_refusal`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        return number_refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest):
        return number_refusal(request) or await self.get_response(request)
