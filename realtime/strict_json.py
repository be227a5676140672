"""JSON in and out, strictly: what every door parses and what every answer is written with.

Python's `json` accepts more than JSON and can write less than JSON:

- it reads `NaN`, `Infinity` and `-Infinity` (not JSON) and turns `1e999` into infinity;
- a number of more than 4,300 digits raises a bare ValueError (Python's integer-string limit,
  CVE-2020-10735), not a JSONDecodeError, so callers that read `exc.msg` fail on it;
- it writes NaN and infinities as `NaN`/`Infinity`, which `JSON.parse` in a browser refuses.

`loads` refuses all of these with `JsonInputError` (a ValueError whose `message` a client can
read), measures nesting before parsing (realtime.text_safety), and caps number literals at
MAX_NUMBER_CHARS characters; `dumps` never writes NaN or infinities (they become null).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .text_safety import MAX_JSON_DEPTH, json_depth_exceeds

# No number any door takes is longer (ids, sample rates, offsets: at most ~20 digits); a
# longer literal is refused before Python converts it (the conversion is quadratic in digits).
MAX_NUMBER_CHARS = 100


class JsonInputError(ValueError):
    """A text that is not (strict) JSON; `message` says why, for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JsonTooDeep(JsonInputError):
    """Arrays and objects nested deeper than MAX_JSON_DEPTH."""


class JsonNumberTooLong(JsonInputError):
    """A number literal over MAX_NUMBER_CHARS characters."""


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(
        f"{name} is not a JSON number; send a finite number (or null where a field allows it)."
    )


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonNumberTooLong(_too_long(literal))
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonNumberTooLong(_too_long(literal))
    value = float(literal)
    if not math.isfinite(value):
        raise JsonInputError(f"The number {literal} is out of range (it would be infinite).")
    return value


def _too_long(literal: str) -> str:
    return f"A number of {len(literal)} characters; numbers may have at most {MAX_NUMBER_CHARS}."


def loads(raw: str | bytes) -> Any:
    """Parse strict JSON. Raises JsonInputError: not JSON (with line and column), not UTF-8
    (bytes), nested deeper than MAX_JSON_DEPTH, NaN/Infinity, or an overlong number."""
    if json_depth_exceeds(raw):
        raise JsonTooDeep(f"JSON nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(
            raw, parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise JsonInputError(
            f"JSON must be UTF-8 text: byte {exc.start} does not decode."
        ) from None
    except (ValueError, RecursionError) as exc:  # Whatever else the parser refuses, said plainly.
        raise JsonInputError(f"Not valid JSON: {exc}") from None


class StrictJSONDecoder(json.JSONDecoder):
    """`loads` as a decoder class, for code that takes one (Django's forms.JSONField: the admin).
    Its refusals are JSONDecodeErrors, the one error such code expects."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return loads(s)
        except JsonInputError as exc:
            raise json.JSONDecodeError(exc.message, s, 0) from None


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that writes only JSON: NaN and infinities in dicts, lists and tuples become
    null (a value we could not measure is unknown, not an error for the client). Raises
    ValueError when one hides where it cannot be replaced (inside an object the encoder
    converts), rather than write it."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
