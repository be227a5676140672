"""daphne leaves form bodies to Django: Twisted no longer parses them on the event loop.

Twisted's `http.Request` parses every POST body sent as `application/x-www-form-urlencoded` or
`multipart/form-data` into `request.args` before daphne sees the request, on the event loop and
in memory, with none of Django's limits (`DATA_UPLOAD_MAX_NUMBER_FIELDS`, `_FILES`). daphne never
reads `request.args` (it passes the raw body to the application), so that work was wasted: a
9.6 MB form body of 2.4 million fields held the loop (every connection of the process) for 2.7 s,
and a multipart body without a boundary was answered a bare "400 Bad Request" with no body,
before Django or the API's JSON errors. `bodies_to_django()` turns that parsing off.
"""

from __future__ import annotations


def bodies_to_django() -> None:
    """Patch daphne's request class (once) so Twisted leaves POST form bodies unparsed."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "voz_bodies_to_django", False):
        return
    original = WebRequest.__init__

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # Twisted's switch (`parsePOSTFormSubmission`).

    WebRequest.__init__ = __init__
    WebRequest.voz_bodies_to_django = True
