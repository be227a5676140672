"""`python -m realtime.daphne_run ARGS`: daphne's own command line, with an access log that
never records secrets.

daphne writes an access line per request (at its default verbosity) with the full path and
query string, so a `?token=voz_…` would land in the server's log. Same arguments as `daphne`.
"""

from __future__ import annotations

import re
import sys

from daphne import cli
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


def main(argv: list[str] | None = None) -> None:
    # daphne's CLI builds its access log from this module global: swap in the redacting one.
    cli.AccessLogGenerator = RedactingAccessLog
    cli.CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
