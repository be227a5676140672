"""The API's one application error: routers raise it, realtime.api shapes it into JSON.

`raise ApiError(413, "upload_too_large", "The upload is 12 MB; the limit is 10 MB.")` answers
`{"detail": ..., "code": "upload_too_large", "errors": [{"field": "", "message": ...}]}` with
HTTP 413. Routers need nothing from realtime.api, so there is no import cycle.
"""

from __future__ import annotations

from ninja import Schema


class ApiError(Exception):
    """An answer other than success, with its HTTP status and a stable `code` (docs/api.md)."""

    def __init__(
        self, status: int, code: str, detail: str, *, field: str = "", headers=None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def errors(self) -> list[dict[str, str]]:
        return [{"field": self.field, "message": self.detail}]


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    """Every error answer of the API."""

    detail: str
    code: str
    errors: list[FieldErrorOut] | None = None
