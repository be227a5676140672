"""daphne's access log without secrets (used by `python -m realtime.server`).

daphne writes an access line per request (at its default verbosity) with the full path and
query string, so a `?token=voz_…` would land in the server's log.
"""

from __future__ import annotations

import re

from daphne.access import AccessLogGenerator

REDACTED = "[redacted]"
SECRET_PARAMETER = re.compile(
    r"([?&;](?:token|access_token|api_key|apikey|key|password|secret|session)=)[^&;\s\"]*",
    re.IGNORECASE,
)
TOKEN = re.compile(r"voz_[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """`GET /x?token=voz_abc&a=1` → `GET /x?token=[redacted]&a=1`; a bare `voz_…` token too."""
    return TOKEN.sub(REDACTED, SECRET_PARAMETER.sub(rf"\1{REDACTED}", text))


class RedactingAccessLog(AccessLogGenerator):
    """daphne's NCSA-style access log with secret query parameters and tokens redacted."""

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        super().write_entry(host, date, redact(request), status, length, ident, user)
