"""The REST API: one NinjaAPI with every router, token/session auth and JSON errors.

Errors always look like `{"detail": "...", "code": "...", "errors": [{"field", "message"}]}`
(realtime.errors.ErrorOut), whatever failed: routers raise realtime.errors.ApiError, services
raise their own types mapped here, and anything unexpected is a JSON 500 (`internal_error`),
never Django's HTML page. The OpenAPI schema lists every status an operation can answer
(realtime.openapi_errors).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    ObjectDoesNotExist,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
    ValidationError,
)
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.renderers import JSONRenderer

from accounts.auth import api_auth
from accounts.throttling import CallerRateThrottle
from audio_pipeline.api import router as speech_router
from characters.api import router as characters_router
from characters.services import InUse, NameTaken
from conversation.api import router as conversation_router

from . import strict_json
from .errors import ApiError
from .json_body import StrictParser
from .openapi_errors import document_errors

logger = logging.getLogger(__name__)


class VozApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return document_errors(schema)


class StrictJsonRenderer(JSONRenderer):
    """Answers are JSON a browser can parse: NaN and infinities become null (realtime.strict_json),
    never the `NaN` literal."""

    def render(self, request: HttpRequest, data, *, response_status: int) -> str:
        return strict_json.dumps(data, cls=self.encoder_class, **self.json_dumps_params)


api = VozApi(
    title="Voz API",
    version="1",
    description="Characters, instances, memory and conversations for the Voz voice server.",
    auth=api_auth,
    throttle=[CallerRateThrottle()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    docs_decorator=require_safe,  # The docs and the schema are read only: 405 for the rest.
    parser=StrictParser(),
    renderer=StrictJsonRenderer(),
)
api.add_router("/", characters_router)
api.add_router("/", conversation_router)
api.add_router("/", speech_router)


def error_response(
    request: HttpRequest,
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body: dict = {"detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    response = api.create_response(request, body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="voz"'
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@csrf_exempt  # No endpoint, nothing to protect: a POST gets this 404, not a CSRF page.
def not_found_view(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any `/api/` path that is no endpoint: the API's JSON 404 (Django's page was HTML)."""
    return error_response(
        request, 404, "not_found", f"No API endpoint at {request.path}; see /api/docs."
    )


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(request, exc.status, exc.code, exc.detail, exc.errors, exc.headers)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_down(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    logger.warning("API: database unavailable: %s", exc)
    return error_response(
        request,
        503,
        "unavailable",
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API: unexpected error on %s %s", request.method, request.path)
    return error_response(
        request, 500, "internal_error", "The server failed on this request; it was logged."
    )


@api.exception_handler(TooManyFieldsSent)
@api.exception_handler(TooManyFilesSent)
def on_too_many_parts(
    request: HttpRequest, exc: TooManyFieldsSent | TooManyFilesSent
) -> HttpResponse:
    """Django refuses a form past DATA_UPLOAD_MAX_NUMBER_FIELDS / _FILES when it is read."""
    if isinstance(exc, TooManyFilesSent):
        limit, what = settings.DATA_UPLOAD_MAX_NUMBER_FILES, "files"
    else:
        limit, what = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS, "form fields"
    return error_response(
        request, 400, "too_many_parts", f"The request has more than {limit} {what}."
    )


@api.exception_handler(RequestDataTooBig)
def on_body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    """ninja reads `request.body` outside its parse-error handling: without this, a 500."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        request, 413, "too_large", f"The body is over HTTP_MAX_BODY_BYTES ({limit} bytes)."
    )


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request,
        401,
        "unauthorized",
        "Authentication required: send 'Authorization: Bearer <token>' or sign in.",
    )


@api.exception_handler(ObjectDoesNotExist)
def on_not_found(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    return error_response(request, 404, "not_found", _not_found_message(exc))


@api.exception_handler(Http404)
def on_http404(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not_found", "Not found.")


@api.exception_handler(NameTaken)
def on_name_taken(request: HttpRequest, exc: NameTaken) -> HttpResponse:
    return error_response(
        request, 409, "name_taken", str(exc), [{"field": "name", "message": str(exc)}]
    )


@api.exception_handler(InUse)
def on_in_use(request: HttpRequest, exc: InUse) -> HttpResponse:
    return error_response(request, 409, "in_use", str(exc))


@api.exception_handler(ValidationError)
def on_model_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if hasattr(exc, "error_dict"):
        errors = [
            {"field": field, "message": message}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        errors = [{"field": "", "message": message} for message in exc.messages]
    return error_response(request, 422, "validation_error", _summary(errors), errors)


@api.exception_handler(NinjaValidationError)
def on_schema_validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = []
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "payload")]
        field = ".".join(location[1:] if location[:1] in (["query"], ["path"]) else location)
        errors.append({"field": field, "message": error.get("msg", "Invalid value.")})
    return error_response(request, 422, "validation_error", _summary(errors), errors)


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ApiError):  # ninja wraps the parser's refusal (json_body).
        return on_api_error(request, exc.__cause__)
    code = {400: "bad_request", 413: "too_large", 429: "rate_limited"}.get(exc.status_code, "error")
    return error_response(request, exc.status_code, code, str(exc.message))


def _not_found_message(exc: ObjectDoesNotExist) -> str:
    owner = type(exc).__qualname__.partition(".")[0]  # e.g. "CharacterInstance.DoesNotExist"
    readable = {"CharacterInstance": "Instance", "MemoryRevision": "Memory revision"}
    return f"{readable.get(owner, owner or 'Object')} not found."


def _summary(errors: list[dict[str, str]]) -> str:
    if not errors:
        return "Invalid input."
    first = errors[0]
    prefix = f"{first['field']}: " if first["field"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{prefix}{first['message']}{more}"
