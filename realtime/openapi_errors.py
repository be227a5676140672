"""Every status an API operation can answer is in the OpenAPI schema, with the error body.

Some answers can come from any operation: 422 (invalid input, including text we cannot store:
realtime.http_edge), 429 (API_RATE_LIMIT) and 503 (database unavailable); 401 where auth is
needed, 404 where the path or the body names an object, 400 where a JSON body is parsed. Routers declare
their own other errors next to the view (`response={201: X, 409: ErrorOut}`); OPERATION_ERRORS
covers views whose routers do not (yet) declare them.
"""

from __future__ import annotations

from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
ERROR_SCHEMA = {
    "title": "ErrorOut",
    "type": "object",
    "required": ["detail", "code"],
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "anyOf": [
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
                {"type": "null"},
            ]
        },
    },
}
DESCRIPTIONS = {
    "400": "Malformed JSON body (`bad_request`)",
    "401": "No valid token or session (`unauthorized`)",
    "404": "Unknown id, or not the caller's (`not_found`)",
    "409": "Conflict (`name_taken`, `in_use`, `conversation_ended`, `turn_in_progress`)",
    "413": "Too large",
    "415": "Unsupported audio",
    "422": "Invalid input; `errors` names each field (`validation_error`, …)",
    "429": "Over API_RATE_LIMIT, (chat, memory consolidation) the user's WS_TURNS_PER_MINUTE or (TTS) TTS_CONCURRENT_PER_USER (`rate_limited`, see Retry-After)",
    "502": "The reply model failed",
    "503": "A dependency is unavailable (`unavailable`, `tts_unavailable`)",
    "504": "The reply model timed out",
}
# operationId → statuses its view answers beyond the common ones.
OPERATION_ERRORS = {
    "conversation_api_chat": ("409", "502", "504"),
    "conversation_api_consolidate_memory": ("502", "504"),
}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error answers to every operation of an OpenAPI schema (in place, returned)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = ERROR_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            statuses = {"422", "429", "503", *OPERATION_ERRORS.get(operation["operationId"], ())}
            if operation.get("security"):
                statuses.add("401")
            if "{" in path or "requestBody" in operation:
                statuses.add("404")  # The path or the body names an object.
            if "requestBody" in operation:
                statuses.add("400")
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(
                    status,
                    {
                        "description": DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return schema
