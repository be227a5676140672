"""Protocol v1 (`docs/protocol.md`), the one place that knows the wire: client JSON → frames
(`parse_client`), frames → server events (`events_for`)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from characters.schemas import LANGUAGE_PATTERN
from realtime import close_codes, strict_json

from . import frames as f
from .observe import OBSERVED_TYPES

PROTOCOL = "voz.v1"
INPUT_FORMATS = {"pcm16"}
OUTPUT_FORMATS = {"wav", "pcm16", "mp3"}
TEXT_ONLY = "none"  # `output_audio: {"format": "none"}`: replies as text events only.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000

TURN_DETECTION_TYPES = {"server_vad"}
LANGUAGE_TAG = re.compile(LANGUAGE_PATTERN)  # The shape a character's language is saved in.

# Close codes (all of them, with what a client should do: realtime/close_codes.py).
CLOSE_NORMAL = close_codes.NORMAL
CLOSE_UNAUTHORIZED = close_codes.UNAUTHORIZED
CLOSE_NOT_FOUND = close_codes.NOT_FOUND
CLOSE_TIMEOUT = close_codes.TIMEOUT
CLOSE_SLOW_CLIENT = close_codes.SLOW_CLIENT
CLOSE_TOO_MANY_SESSIONS = close_codes.TOO_MANY_SESSIONS


class ProtocolError(Exception):
    """A client message the server refuses; becomes an `error` event."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def frame(self) -> f.Failure:
        return f.Failure(self.code, self.message, self.fatal)


@dataclass(frozen=True)
class AudioFormat:
    format: str
    sample_rate: int


@dataclass(frozen=True)
class SessionStart:
    instance: str
    language: str | None = None
    input_audio: AudioFormat = field(default_factory=lambda: AudioFormat("pcm16", 16000))
    output_format: str = "wav"
    conversation: str | None = None
    turn_detection: str | None = "server_vad"  # None: manual, only input_audio.commit ends turns


def parse_client(raw: str, *, max_text_chars: int) -> f.Frame | SessionStart:
    """One client text frame as a frame (or the session.start request). Raises ProtocolError."""
    message = parse_message(raw)
    kind = message["type"]
    now = time.monotonic()
    if kind == "session.start":
        return parse_session_start(message)
    if kind == "input_text":
        return f.TypedText(parse_text(message, max_text_chars), now)
    if kind == "input_audio.commit":
        return f.Commit(now)
    if kind == "response.cancel":
        return f.ClientCancel()
    if kind == "session.end":
        return f.EndRequest()
    if kind == "ping":
        return f.Ping(message.get("id"), "id" in message)
    raise ProtocolError("unknown_type", f"Unknown message type {kind!r}.")


def parse_message(raw: str) -> dict[str, Any]:
    try:
        message = strict_json.loads(raw)
    except strict_json.JsonInputError as exc:
        raise ProtocolError("bad_json", f"Text frames must be JSON objects: {exc.message}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_json", 'Text frames must be JSON objects with a "type".')
    return message


def parse_session_start(message: dict[str, Any]) -> SessionStart:
    instance = message.get("instance")
    if not isinstance(instance, str) or not instance.strip():
        raise ProtocolError("invalid_message", "session.start needs 'instance' (an instance name).")
    language = message.get("language")
    if language is not None and (
        not isinstance(language, str) or len(language) > 35 or not LANGUAGE_TAG.fullmatch(language)
    ):
        raise ProtocolError(
            "invalid_message", "'language' must be a language tag such as 'es', 'en' or 'es-MX'."
        )
    conversation = message.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        raise ProtocolError("invalid_message", "'conversation' must be a conversation id.")
    return SessionStart(
        instance=instance.strip(),
        language=language,
        input_audio=_parse_input_audio(message.get("input_audio")),
        output_format=_parse_output_format(message.get("output_audio")),
        conversation=conversation,
        turn_detection=_parse_turn_detection(message),
    )


def _parse_turn_detection(message: dict[str, Any]) -> str | None:
    if "turn_detection" not in message:
        return "server_vad"
    value = message["turn_detection"]
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in TURN_DETECTION_TYPES:
        raise ProtocolError(
            "invalid_message",
            "'turn_detection' must be null (only input_audio.commit ends a turn) or "
            '{"type": "server_vad"}.',
        )
    return kind


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
    if fmt not in OUTPUT_FORMATS | {TEXT_ONLY}:
        raise ProtocolError(
            "unsupported_format",
            f"Output audio format {fmt!r} is not supported; use one of "
            f"{sorted(OUTPUT_FORMATS | {TEXT_ONLY})}.",
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


# Frames → server events ------------------------------------------------------------------------

Event = dict[str, Any]


def observed(event: Event) -> bool:
    """Whether observers of the instance (`/ws/observe/`) see this event."""
    return event.get("type") in OBSERVED_TYPES


def events_for(frame: f.Frame) -> list[tuple[Event, bytes | None]]:
    """The wire events for a frame, each with the binary frame that follows it (or None)."""
    event = _event(frame)
    if isinstance(frame, f.SentenceAudio):
        return [(event, frame.data)]
    if isinstance(frame, f.ReplyDone):
        return [
            (event, None),
            ({"type": "metrics", "response_id": frame.response_id, **frame.metrics}, None),
        ]
    return [] if event is None else [(event, None)]


def _event(frame: f.Frame) -> Event | None:
    match frame:
        case f.Partial(text=text):
            return {"type": "transcript.partial", "text": text}
        case f.BargeIn(speech_ms=speech_ms):
            return {"type": "input_audio.speech_started", "speech_ms": speech_ms}
        case f.ResumeReply(response_id=response_id):
            return {"type": "response.resumed", "response_id": response_id}
        case f.IgnoredTurn(text=text, reason=reason):
            return {"type": "transcript.ignored", "text": text, "reason": reason}
        case f.TranscriptStored():
            return {
                "type": "transcript.final",
                "text": frame.text,
                "message_id": frame.message_id,
                "conversation_id": frame.conversation_id,
            }
        case f.ReplyStarted():
            return {"type": "response.started", "response_id": frame.response_id}
        case f.TextDelta():
            return {
                "type": "response.text.delta",
                "response_id": frame.response_id,
                "delta": frame.text,
            }
        case f.Sentence():
            return {
                "type": "response.sentence",
                "response_id": frame.response_id,
                "index": frame.index,
                "text": frame.text,
            }
        case f.SentenceAudio():
            return {
                "type": "response.audio",
                "response_id": frame.response_id,
                "index": frame.index,
                "format": frame.format,
                "sample_rate": frame.sample_rate,
                "bytes": len(frame.data),
                "engine": frame.engine,
            }
        case f.ReplyDone():
            done = {
                "type": "response.done",
                "response_id": frame.response_id,
                "text": frame.text,
                "interrupted": frame.interrupted,
                "message_id": frame.message_id,
                "conversation_id": frame.conversation_id,
            }
            return done | ({"error": frame.error} if frame.error else {})
        case f.Failure():
            event = {
                "type": "error",
                "code": frame.code,
                "message": frame.message,
                "fatal": frame.fatal,
            }
            if frame.retry_after is not None:
                event["retry_after"] = frame.retry_after
            return event
        case f.Pong():
            return {"type": "pong", **({"id": frame.id} if frame.has_id else {})}
        case f.SessionStarted():
            return _session_started(frame)
        case f.SessionEnded():
            return {"type": "session.ended", "conversation_id": frame.conversation_id}
    return None


def _session_started(frame: f.SessionStarted) -> Event:
    return {
        "type": "session.started",
        "protocol": PROTOCOL,
        "session_id": frame.session_id,
        "conversation_id": frame.conversation_id,
        "instance": {
            "id": frame.instance_id,
            "name": frame.instance_name,
            "character": frame.character,
            "language": frame.character_language,
        },
        "language": frame.language,
        "input_audio": {"format": frame.input_format, "sample_rate": frame.input_rate},
        "output_audio": {"format": frame.output_format},
        "limits": frame.limits.as_dict(),
        "stt_engine": frame.stt_engine,
        "tts_engines": list(frame.tts_engines),
        "llm_engine": frame.llm_engine,
        "turn_detection": None if frame.turn_detection is None else {"type": frame.turn_detection},
        "interruption": {
            "by": frame.barge_in,
            "min_speech_ms": frame.interrupt_min_speech_ms,
        },
    }
