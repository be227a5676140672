"""HTTP methods at the door: `HEAD` is answered wherever `GET` is, and a 405 is JSON with `Allow`.

Django function views and django-ninja operations list the methods they take, and neither
answers `HEAD` (only class-based views do), so probes and scripts asking `HEAD /readyz` or
`HEAD /api/voices` got 405. Here a `HEAD` is routed as the `GET` it asks about and answered
without a body (headers and `Content-Length` as the `GET` would send them). Every 405, from
the API, the probes or the pages, becomes the API's JSON error
`{"detail", "code": "method_not_allowed"}` with an `Allow` header that includes `HEAD`
whenever `GET` is allowed.

A method the route does not take at all (`TRACE`, or `PUT` on a page) is refused here, before
the view and before the CSRF check, which would otherwise answer its HTML 403 first. The methods
of a route come from the view itself (`route_methods`); a POST to a form page still meets CSRF.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import Resolver404, resolve
from django.views.generic.edit import ProcessFormView

# What a Django function view of unknown methods is taken to handle (the admin's and the
# sign-in pages' own views): what a browser and its forms send.
FORM_METHODS = frozenset({"GET", "HEAD", "POST"})


def allowed_methods(response: HttpResponse) -> list[str]:
    """The methods a 405 lists in `Allow`, with `HEAD` wherever `GET` is."""
    methods = [m.strip().upper() for m in response.get("Allow", "").split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return methods


def _declared_methods(view: Callable) -> frozenset[str] | None:
    """The methods `view` says it takes, or None when it does not say.

    Class-based views list theirs (`http_method_names` with a handler); django-ninja's path
    views hold their operations; Django's `require_http_methods` (`require_safe`, …) keeps its
    list in the closure of its wrapper, possibly under other decorators (`__wrapped__`).
    """
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        methods = {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}
        if getattr(view_class, "put", None) is ProcessFormView.put:
            methods.discard("PUT")  # Django's form views take PUT as a POST: no browser sends it.
        return frozenset(methods)
    seen = 0
    while view is not None and seen < 10:
        seen += 1
        try:
            names = inspect.getclosurevars(view).nonlocals
        except (TypeError, ValueError):
            names = {}
        if "request_method_list" in names:
            return frozenset(m.upper() for m in names["request_method_list"])
        path_view = names.get("self")
        operations = getattr(path_view, "operations", None)
        if operations is not None and hasattr(path_view, "_find_operation"):
            return frozenset(m.upper() for op in operations for m in op.methods)
        view = getattr(view, "__wrapped__", None) or getattr(view, "func", None)
    return None


def route_methods(request: HttpRequest) -> frozenset[str] | None:
    """The methods the route of `request` takes (`HEAD` wherever `GET`), or None when no route
    matches or its view answers every method itself (a CSRF-exempt view of unknown methods, such
    as the API's JSON 404)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return None
    methods = _declared_methods(match.func)
    if methods is None:
        if getattr(match.func, "csrf_exempt", False):
            return None
        methods = FORM_METHODS
    return methods | {"HEAD"} if "GET" in methods else methods


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
        refused = self._refused(request)
        if refused is not None:
            return refused
        head = self._route_head_as_get(request)
        return self._finish(request, self.get_response(request), head)

    async def _acall(self, request: HttpRequest):
        refused = self._refused(request)
        if refused is not None:
            return refused
        head = self._route_head_as_get(request)
        return self._finish(request, await self.get_response(request), head)

    @staticmethod
    def _refused(request: HttpRequest) -> HttpResponse | None:
        """The JSON 405 for a method the route does not take, before any other check."""
        methods = route_methods(request)
        if methods is None or request.method in methods:
            return None
        order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        listed = sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))
        allow = HttpResponse(status=405)
        allow["Allow"] = ", ".join(listed)
        return method_not_allowed(request, allow)

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
