"""The API's request parser: every JSON body and form field is checked where it is parsed.

django-ninja parses a body as JSON for any `Content-Type` (`application/octet-stream`,
`text/plain`, none at all), so the check belongs to the parser, not to a middleware that goes by
the header. `StrictParser` parses with realtime.strict_json (no NaN/Infinity, no overlong
numbers, depth measured first) and refuses text that cannot be stored (realtime.text_safety):

- not JSON, NaN/Infinity: 400 `bad_request` with the parser's reason;
- a number literal over MAX_NUMBER_CHARS characters (Python's int conversion is quadratic in
  digits and refuses more than 4,300): 400 `number_too_long`;
- nested deeper than MAX_JSON_DEPTH, not an object, NUL or an unpaired surrogate: 422
  `validation_error` naming the field.

ninja turns whatever the parser raises into a 400 "Cannot parse request body" `from` the
original exception; realtime.api answers the original (an ApiError) instead.

A JSON body over `json_body_limit()` bytes is refused (413 `too_large`) before it is parsed.
Parsing is linear but slow in Python, and ninja parses on the event loop for async operations;
a thread would not help (the regular expressions and the JSON scanner hold the GIL): an 8 MB
body (HTTP_MAX_BODY_BYTES allows 10 MB for audio) held every connection of the process for
0.8-1.3 s and cost up to 17 s of CPU. No field takes more than a few text limits' worth.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict
from ninja.parser import Parser

from .errors import ApiError
from .strict_json import JsonInputError, JsonNumberTooLong, JsonTooDeep, loads
from .text_safety import find_unsafe, unsafe_reason

JSON_BODY_MIN_LIMIT = 1024 * 1024
BYTES_PER_CHAR = 12  # A character written as a surrogate pair of \u escapes.


def json_body_limit() -> int:
    """The largest JSON body the API parses (bytes): 1 MiB, or room for four of the longest
    texts a field takes (MEMORY_MAX_CHARS, DESCRIPTION_MAX_CHARS, …), escaped, if more."""
    longest = max(
        settings.MEMORY_MAX_CHARS,
        settings.DESCRIPTION_MAX_CHARS,
        settings.CHAT_MAX_CHARS,
        settings.TTS_MAX_CHARS,
    )
    return max(JSON_BODY_MIN_LIMIT, 4 * BYTES_PER_CHAR * longest)


class StrictParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        """The body as a JSON object. Raises ApiError (400, 413 or 422, see the module)."""
        limit = json_body_limit()
        if len(request.body) > limit:
            raise ApiError(
                413, "too_large", f"A JSON body of {len(request.body)} bytes; the limit is {limit}."
            )
        try:
            data = loads(request.body)
        except JsonTooDeep as exc:
            raise ApiError(422, "validation_error", exc.message) from None
        except JsonNumberTooLong as exc:
            raise ApiError(400, "number_too_long", exc.message) from None
        except JsonInputError as exc:
            raise ApiError(400, "bad_request", f"Cannot parse the body: {exc.message}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "validation_error", "The body must be a JSON object.")
        if found := find_unsafe(data):
            field, reason = found
            raise ApiError(422, "validation_error", _detail(field, reason), field=field)
        return data

    def parse_querydict(
        self, data: MultiValueDict, list_fields: list[str], request: HttpRequest
    ) -> dict[str, Any]:
        """Form fields (ninja's `Form`), refused like JSON text when they cannot be stored."""
        for key, values in data.lists():
            for value in values:
                if isinstance(value, str) and (reason := unsafe_reason(value)):
                    raise ApiError(422, "validation_error", _detail(key, reason), field=key)
        return super().parse_querydict(data, list_fields, request)


def _detail(field: str, reason: str) -> str:
    return f"{field}: {reason}" if field else reason
