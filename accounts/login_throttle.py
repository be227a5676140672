"""Failed sign-ins are throttled with django-axes (docs/reliability.md, "Per-user limits").

Axes counts failures in the database (so every server process sees them) per username and per
client IP address; after LOGIN_FAILURE_LIMIT failures for either, sign-ins for it are refused
for LOGIN_LOCKOUT_SECONDS, the right password included. That covers every door that calls
`django.contrib.auth.authenticate` with a request: the browser's /accounts/login/ and the admin's
/admin/login/ (API tokens are not passwords and are not guessable).

Here: the backend that asks Axes first, and the refusal a locked-out client gets (429 with
Retry-After, HTML or JSON).
"""

from __future__ import annotations

import math
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_ip_address
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone

LOCKED_CODE = "login_locked"


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' check before the real backends. Code that authenticates without a request (the
    test client's `login()`, a shell) is no door for guessing and is not throttled; Axes itself
    would raise there."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def retry_after_seconds(request: HttpRequest) -> int:
    """Seconds until this request's username and address may sign in again (at least 1)."""
    username = request.POST.get(settings.AXES_USERNAME_FORM_FIELD) if request.POST else None
    ip = get_client_ip_address(request)
    latest = AccessAttempt.objects.filter(Q(username=username) | Q(ip_address=ip)).aggregate(
        latest=Max("attempt_time")
    )["latest"]
    if latest is None:
        return 1
    left = (latest + settings.AXES_COOLOFF_TIME - timezone.now()).total_seconds()
    return max(1, math.ceil(left))


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """429 `login_locked` with Retry-After: JSON when the client asks for it, else a page.
    (Axes passes `(request, response, credentials)` or, from async middleware, two
    arguments; neither is needed here.)"""
    seconds = retry_after_seconds(request)
    minutes = math.ceil(seconds / 60)
    detail = (
        f"Too many failed sign-ins for this username or from this address; "
        f"try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    if "application/json" in request.headers.get("Accept", ""):
        response: HttpResponse = JsonResponse(
            {"detail": detail, "code": LOCKED_CODE, "retry_after": seconds}, status=429
        )
    else:
        page = render_to_string("accounts/login_locked.html", {"minutes": minutes}, request)
        response = HttpResponse(page, status=429)
    response["Retry-After"] = str(seconds)
    return response
