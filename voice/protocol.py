"""Protocol v1 (`docs/protocol.md`): parsing client messages and naming server events/errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = "voz.v1"
INPUT_FORMATS = {"pcm16"}
OUTPUT_FORMATS = {"wav", "pcm16", "mp3"}
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000

CLOSE_NORMAL = 1000
CLOSE_SERVER_ERROR = 1011
CLOSE_UNAUTHORIZED = 4401
CLOSE_TIMEOUT = 4408
CLOSE_SLOW_CLIENT = 4429


class ProtocolError(Exception):
    """A client message the server refuses; becomes an `error` event."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def event(self) -> dict[str, Any]:
        return error_event(self.code, self.message, fatal=self.fatal)


def error_event(code: str, message: str, *, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


@dataclass(frozen=True)
class AudioFormat:
    format: str
    sample_rate: int

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "sample_rate": self.sample_rate}


@dataclass(frozen=True)
class SessionStart:
    instance: str
    language: str | None = None
    input_audio: AudioFormat = field(default_factory=lambda: AudioFormat("pcm16", 16000))
    output_format: str = "wav"
    conversation: str | None = None


def str_or_none(value: Any) -> str | None:
    """Ids in events are strings, or null."""
    return None if value is None else str(value)


def parse_message(raw: str) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("bad_json", f"Text frames must be JSON objects: {exc.msg}.") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_json", 'Text frames must be JSON objects with a "type".')
    return message


def parse_session_start(message: dict[str, Any]) -> SessionStart:
    instance = message.get("instance")
    if not isinstance(instance, str) or not instance.strip():
        raise ProtocolError("invalid_message", "session.start needs 'instance' (an instance name).")
    language = message.get("language")
    if language is not None and (not isinstance(language, str) or not 2 <= len(language) <= 20):
        raise ProtocolError("invalid_message", "'language' must be a language tag like 'es'.")
    conversation = message.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        raise ProtocolError("invalid_message", "'conversation' must be a conversation id.")
    return SessionStart(
        instance=instance.strip(),
        language=language,
        input_audio=_parse_input_audio(message.get("input_audio")),
        output_format=_parse_output_format(message.get("output_audio")),
        conversation=conversation,
    )


def _parse_input_audio(value: Any) -> AudioFormat:
    if value is None:
        return AudioFormat("pcm16", 16000)
    if not isinstance(value, dict):
        raise ProtocolError("invalid_message", "'input_audio' must be an object.")
    fmt = value.get("format", "pcm16")
    rate = value.get("sample_rate", 16000)
    if fmt not in INPUT_FORMATS:
        raise ProtocolError(
            "unsupported_format", f"Input audio format {fmt!r} is not supported; use 'pcm16'."
        )
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise ProtocolError("invalid_message", "'input_audio.sample_rate' must be an integer.")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(
            "unsupported_format",
            f"Sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz.",
        )
    return AudioFormat(fmt, rate)


def _parse_output_format(value: Any) -> str:
    if value is None:
        return "wav"
    if not isinstance(value, dict):
        raise ProtocolError("invalid_message", "'output_audio' must be an object.")
    fmt = value.get("format", "wav")
    if fmt not in OUTPUT_FORMATS:
        raise ProtocolError(
            "unsupported_format",
            f"Output audio format {fmt!r} is not supported; use one of {sorted(OUTPUT_FORMATS)}.",
        )
    return fmt


def parse_text(message: dict[str, Any], limit: int) -> str:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("invalid_message", "input_text needs a non-empty 'text'.")
    if len(text) > limit:
        raise ProtocolError(
            "text_too_long", f"Text is {len(text)} characters; the limit is {limit}."
        )
    return text.strip()
