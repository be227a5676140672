"""Logs without secrets: daphne's access log (used by `python -m realtime.server`) and ours.

daphne writes an access line per request (at its default verbosity) with the full path and
query string, so a `?token=voz_…` would land in the server's log. A query parameter is redacted
by its decoded name (`%74oken`, `TOKEN`, `access-token` are all `token` to a parser) and a
value holding a Voz token (`voz_…`, also percent-encoded) is redacted whatever its name.
`RedactingFilter` does the same for every record of our own logging.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from daphne.access import AccessLogGenerator

REDACTED = "[redacted]"
# Names compared lower case with everything but letters and digits removed.
SECRET_NAMES = frozenset(
    {"auth", "authorization", "bearer", "session", "sessionid", "apikey", "key", "passwd"}
)
SECRET_SUFFIXES = ("token", "password", "secret", "apikey", "accesskey", "privatekey", "secretkey")
QUERY = re.compile(r"\?([^\s\"#]*)")
TOKEN = re.compile(r"voz(?:_|%5f)[A-Za-z0-9_\-%]+", re.IGNORECASE)


def _decoded(text: str, rounds: int = 3) -> str:
    """Percent-decoding repeated until nothing changes (a double-encoded name is no cover)."""
    for _ in range(rounds):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def secret_name(name: str) -> bool:
    """`token`, `%74oken`, `TOKEN`, `access_token`, `X-Api-Key` … name a secret."""
    plain = re.sub(r"[^a-z0-9]", "", _decoded(name).lower())
    return plain in SECRET_NAMES or plain.endswith(SECRET_SUFFIXES)


def _redact_query(match: re.Match) -> str:
    parts = re.split(r"([&;])", match.group(1))
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals and (secret_name(name) or TOKEN.search(_decoded(value))):
            parts[index] = f"{name}={REDACTED}"
    return "?" + "".join(parts)


def redact(text: str) -> str:
    """`GET /x?%74oken=voz_abc&a=1` → `GET /x?%74oken=[redacted]&a=1`; a bare `voz_…` too."""
    return TOKEN.sub(REDACTED, QUERY.sub(_redact_query, text))


class RedactingAccessLog(AccessLogGenerator):
    """daphne's NCSA-style access log with secret query parameters and tokens redacted."""

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        super().write_entry(host, date, redact(request), status, length, ident, user)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from each record's message (settings.LOGGING)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
