"""HTTP methods at the door: `HEAD` is answered wherever `GET` is, and a 405 is JSON with `Allow`.

Django function views and django-ninja operations list the methods they take, and neither
answers `HEAD` (only class-based views do), so probes and scripts asking `HEAD /readyz` or
`HEAD /api/voices` got 405. Here a `HEAD` is routed as the `GET` it asks about and answered
without a body (headers and `Content-Length` as the `GET` would send them). Every 405, from
the API, the probes or the pages, becomes the API's JSON error
`{"detail", "code": "method_not_allowed"}` with an `Allow` header that includes `HEAD`
whenever `GET` is allowed.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse


def allowed_methods(response: HttpResponse) -> list[str]:
    """The methods a 405 lists in `Allow`, with `HEAD` wherever `GET` is."""
    methods = [m.strip().upper() for m in response.get("Allow", "").split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return methods


def method_not_allowed(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A 405 as the API's JSON error, keeping its `Allow`."""
    methods = allowed_methods(response)
    use = f"; use {', '.join(methods)}" if methods else ""
    answer = JsonResponse(
        {
            "detail": f"{request.method} is not allowed on {request.path}{use}.",
            "code": "method_not_allowed",
        },
        status=405,
    )
    answer["Allow"] = ", ".join(methods)
    return answer


def without_body(response: HttpResponse) -> HttpResponse:
    """The answer to a `HEAD`: the `GET`'s status and headers, no body."""
    if isinstance(response, StreamingHttpResponse):
        response.close()
        response.streaming_content = []
        return response
    if not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    response.content = b""
    return response


class HttpMethodsMiddleware:
    """Django middleware (sync and async): HEAD as GET without a body; JSON 405 with Allow."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        head = self._route_head_as_get(request)
        return self._finish(request, self.get_response(request), head)

    async def _acall(self, request: HttpRequest):
        head = self._route_head_as_get(request)
        return self._finish(request, await self.get_response(request), head)

    @staticmethod
    def _route_head_as_get(request: HttpRequest) -> bool:
        if request.method != "HEAD":
            return False
        request.method = "GET"
        return True

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponse, head: bool) -> HttpResponse:
        if head:
            request.method = "HEAD"
        if response.status_code == 405:
            response = method_not_allowed(request, response)
        return without_body(response) if head else response
