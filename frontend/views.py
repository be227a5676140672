"""The browser page. It signs in with Django's session and talks to the API and WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from characters import selectors


@login_required
def index(request: HttpRequest) -> HttpResponse:
    instances = selectors.instance_list(user=request.user)
    return render(request, "frontend/index.html", {"instances": instances})
