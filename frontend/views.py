"""The browser page. It signs in with Django's session and talks to the API and WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _


def page_strings() -> dict[str, str]:
    """The words the page's JavaScript shows, translated for the request's language."""
    return {
        "connecting": _("Connecting…"),
        "connected": _("Connected"),
        "reconnecting": _("Connection lost. Reconnecting in {seconds} s…"),
        "reconnecting_now": _("Reconnecting…"),
        "closed": _("Not connected"),
        "unauthorized": _("Your session has ended. Please sign in again."),
        "pick_instance": _("Choose an instance to start talking."),
        "mic_start": _("Start microphone"),
        "mic_stop": _("Stop microphone"),
        "mic_denied": _(
            "Microphone access was denied. Allow it in your browser's site settings, or type "
            "your message instead."
        ),
        "mic_missing": _("No microphone was found. You can still type your messages."),
        "mic_failed": _("The microphone could not be started: {error}"),
        "ptt_hold": _("Hold to talk"),
        "ptt_release": _("Release to send"),
        "server_error": _("Server error: {message}"),
        "load_failed": _("Could not load data: {message}"),
        "instance_created": _("Instance “{name}” created."),
        "you": _("You"),
        "interrupted": _("interrupted"),
        "latency": _("first audio after {ms} ms"),
        "latency_title": _("Time from the end of your speech to the first sound of the reply"),
        "no_memory": _("This instance has no memory yet."),
        "memory_chars": _("{chars} of {limit} characters"),
        "no_conversations": _("No conversations yet."),
        "messages_count": _("{count} messages"),
        "not_connected": _("Not connected yet: wait a moment and try again."),
    }


@login_required
def index(request: HttpRequest) -> HttpResponse:
    config = {
        "wsPath": "/ws/voice/",
        # `?mic=raw` turns the browser's echo cancellation, noise suppression and gain control
        # off: a steady signal for tests and for good headsets.
        "rawMic": request.GET.get("mic") == "raw",
    }
    return render(
        request, "frontend/index.html", {"voz_strings": page_strings(), "voz_config": config}
    )
