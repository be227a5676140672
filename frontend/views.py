"""The browser page. It signs in with Django's session and talks to the API and WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe


def page_strings() -> dict:
    """The words the page's JavaScript shows, translated for the request's language."""
    return {
        "connecting": _("Connecting…"),
        "connected": _("Connected"),
        "reconnecting": _("Connection lost. Reconnecting in {seconds} s…"),
        "reconnecting_now": _("Reconnecting…"),
        "closed": _("Not connected"),
        "unauthorized": _("Your session has ended. Please sign in again."),
        "pick_instance": _("Choose an instance to start talking."),
        "talk_to": _("Talk to a character"),
        "mic_start": _("Start microphone"),
        "mic_stop": _("Stop microphone"),
        "mic_denied": _(
            "Microphone access was denied. Allow it in your browser's site settings, or type "
            "your message instead."
        ),
        "mic_missing": _("No microphone was found. You can still type your messages."),
        "mic_failed": _("The microphone could not be started."),
        "ptt_hold": _("Hold to talk"),
        "ptt_release": _("Release to send"),
        "instance_created": _("Instance “{name}” created."),
        "you": _("You"),
        "interrupted": _("interrupted"),
        "latency": _("first audio after {ms} ms"),
        "latency_title": _("Time from the end of your speech to the first sound of the reply"),
        "no_memory": _("This instance has no memory yet."),
        "memory_chars": _("{chars} of {limit} characters"),
        "no_conversations": _("No conversations yet."),
        "untitled": _("(nothing said yet)"),
        "messages_count": _("{count} messages"),
        "current": _("current"),
        "continue_conversation": _("Continue this conversation"),
        "continued": _("Continuing the conversation “{title}”."),
        "not_connected": _("Not connected yet: wait a moment and try again."),
        "details": _("Details"),
        "voice_unavailable": _(
            "Voice input is not available for this language on this server. You can type your "
            "messages; replies are still spoken."
        ),
        "state": {
            "idle": _("{name} is ready"),
            "listening": _("{name} is listening"),
            "thinking": _("{name} is thinking…"),
            "speaking": _("{name} is speaking"),
            "interrupted": _("{name} was interrupted"),
            "offline": _("{name} is offline"),
        },
        "errors": error_messages(),
    }


def error_messages() -> dict[str, str]:
    """Short messages for the error codes of the API (docs/api.md) and the voice protocol
    (docs/protocol.md). The server's own text goes into the banner's collapsible details."""
    protocol = _("The page and the server did not understand each other. Reload the page.")
    audio = _("Some of your microphone audio could not be used.")
    slow = _("You are going faster than allowed. Wait a moment and try again.")
    return {
        "default": _("Something went wrong. Please try again."),
        "network": _("The server could not be reached. Check the connection and try again."),
        "bad_json": protocol,
        "unknown_type": protocol,
        "invalid_message": protocol,
        "not_started": protocol,
        "already_started": protocol,
        "bad_request": protocol,
        "instance_not_found": _("This instance no longer exists. Choose another one."),
        "conversation_not_found": _(
            "That conversation cannot be continued here. A new one starts with your next words."
        ),
        "conversation_ended": _("That conversation has ended. A new one starts now."),
        "unsupported_format": _("The server does not accept this browser's audio format."),
        "frame_too_large": audio,
        "bad_audio": audio,
        "too_large": _("That is too large for the server."),
        "text_too_long": _("That message is too long. Please shorten it."),
        "rate_limited": slow,
        "turn_in_progress": _(
            "Another window or device is talking in this conversation. Wait for its reply, then "
            "try again."
        ),
        "too_many_sessions": _(
            "You have too many conversations open at once. Close one in another window or device."
        ),
        "stt_failed": _("Your words could not be recognised. Please try again, or type them."),
        "llm_failed": _("The character could not answer just now. Please try again."),
        "llm_timeout": _("The character took too long to answer. Please try again."),
        "prompt_too_long": _("This conversation is too long to continue. Start a new one."),
        "tts_failed": _("The reply could not be spoken; it is shown as text."),
        "session_expired": _("The session reached its time limit. Talk or type to reconnect."),
        "idle_timeout": _("Disconnected after a long pause. Talk or type to reconnect."),
        "slow_client": _("The connection is too slow for the reply's audio. Reconnecting…"),
        "internal_error": _("The server failed. Reconnecting…"),
        "unavailable": _("The server cannot take calls right now. Reconnecting…"),
        "name_taken": _("That name is already taken. Choose another one."),
        "validation_error": _("Some fields are not valid. Check them and try again."),
        "not_found": _("Not found. It may have been deleted."),
        "in_use": _("It is still in use, so it cannot be deleted."),
        "unauthorized": _("Your session has ended. Please sign in again."),
        "forbidden": _("You are not allowed to do that."),
        "load_failed": _("Could not load your data. Please try again."),
    }


@require_safe  # A page to read: PUT or DELETE on it is a 405, not the page.
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
