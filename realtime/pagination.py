"""List pagination for the API: `limit` and `offset`, both bounded so no value reaches the
database as an overflow (SQLite stores at most 2^63 - 1; larger offsets were HTTP 500s)."""

from __future__ import annotations

from django.conf import settings
from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination

MAX_OFFSET = 2**53 - 1  # The largest integer a JavaScript client holds exactly.


class LimitOffset(LimitOffsetPagination):
    """`?limit=` (1..NINJA_PAGINATION_MAX_LIMIT) and `?offset=` (0..2^53 - 1); others are 422."""

    class Input(Schema):
        limit: int = Field(
            settings.NINJA_PAGINATION_PER_PAGE, ge=1, le=settings.NINJA_PAGINATION_MAX_LIMIT
        )
        offset: int = Field(0, ge=0, le=MAX_OFFSET)
