"""HTTP speech services: POST /api/stt, POST /api/tts, GET /api/voices.

Errors are the API's JSON errors; the codes are listed in docs/speech.md.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import Field, Query, Router, Schema

from characters.models import LANGUAGE_VALIDATOR
from characters.schemas import LANGUAGE_PATTERN
from realtime.errors import ApiError, ErrorOut

from .formats import INPUT_FORMATS_HELP, AudioFormatError, AudioTooLong
from .services import transcribe_file, tts_body
from .stt import SttUnavailable
from .tts import (
    ENGINES,
    NothingToSay,
    TtsFailed,
    TtsUnavailable,
    UnknownVoice,
    engines_report,
    voice_map_for,
)
from .tts.chain import chain_for
from .tts.pieces import synthesize_pieces
from .tts_slots import TtsSlot, slot_take

router = Router(tags=["speech"])


class WordOut(Schema):
    word: str
    start: float
    end: float
    conf: float


class SttOut(Schema):
    text: str
    language: str
    engine: str
    duration_s: float
    words: list[WordOut]


class TtsIn(Schema):
    text: str = Field(..., min_length=1)
    voice: str | None = None
    language: str = Field("en", pattern=LANGUAGE_PATTERN)
    format: Literal["mp3", "wav", "pcm16", "ogg"] = "mp3"


def _bad_language(language: str) -> str | None:
    try:
        LANGUAGE_VALIDATOR(language)
    except ValidationError as exc:
        return exc.messages[0]
    return None


class UploadTooLarge(ValueError):
    pass


def _read_upload(request: HttpRequest) -> tuple[bytes, str, str | None]:
    """(audio bytes, its content type, language from the form) from multipart or a raw body."""
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type.startswith("multipart/form-data"):
        try:
            upload = request.FILES.get("file")
        except MultiPartParserError as exc:
            raise ApiError(400, "bad_request", f"Malformed multipart body: {exc}") from exc
        if upload is None:
            return b"", "", request.POST.get("language")
        if upload.size > settings.STT_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"The file is {upload.size} bytes")
        return upload.read(), upload.content_type or "", request.POST.get("language")
    try:
        return request.body, content_type, None
    except RequestDataTooBig as exc:
        raise UploadTooLarge(f"The body is over HTTP_MAX_BODY_BYTES ({exc})") from exc


@router.post(
    "/stt",
    response={200: SttOut, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut},
    summary="Transcribe an audio file",
)
async def speech_to_text(
    request: HttpRequest, language: str = Query("", pattern=f"^$|{LANGUAGE_PATTERN}")
):
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    limit = settings.STT_MAX_UPLOAD_BYTES
    if declared > limit and not request.META.get("CONTENT_TYPE", "").startswith("multipart/"):
        raise ApiError(
            413,
            "upload_too_large",
            f"The upload is {declared} bytes; the limit is {limit}.",
        )
    try:
        data, content_type, form_language = await asyncio.to_thread(_read_upload, request)
    except UploadTooLarge as exc:
        raise ApiError(413, "upload_too_large", f"{exc}; the limit is {limit}.") from exc
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"The upload is larger than {limit} bytes.")
    if not data:
        raise ApiError(
            422,
            "no_audio",
            f"Send the audio as the body or as a multipart 'file': {INPUT_FORMATS_HELP}.",
        )
    language = language or form_language or "en"
    if problem := _bad_language(language):
        raise ApiError(422, "validation_error", f"language: {problem}", field="language")
    try:
        result = await asyncio.to_thread(
            transcribe_file, data, content_type=content_type, language=language
        )
    except AudioFormatError as exc:
        raise ApiError(415, "unsupported_audio", str(exc)) from exc
    except AudioTooLong as exc:
        raise ApiError(413, "audio_too_long", str(exc)) from exc
    except SttUnavailable as exc:
        raise ApiError(422, "language_unsupported", str(exc), field="language") from exc
    return {
        "text": result.text,
        "language": language,
        "engine": result.engine,
        "duration_s": result.duration_s,
        "words": [w.__dict__ for w in result.words],
    }


@router.post(
    "/tts", summary="Speak text", response={200: None, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut}
)
async def text_to_speech(request: HttpRequest, payload: TtsIn):
    if len(payload.text) > settings.TTS_MAX_CHARS:
        raise ApiError(
            422,
            "text_too_long",
            f"The text has {len(payload.text)} characters; the limit is {settings.TTS_MAX_CHARS}.",
        )
    if not payload.text.strip():
        raise ApiError(
            422, "validation_error", "text: Say something (the text is blank).", field="text"
        )
    if problem := _bad_language(payload.language):
        raise ApiError(422, "validation_error", f"language: {problem}", field="language")
    if not any(
        ENGINES[n].supports(payload.language) for n in chain_for(payload.language) if n in ENGINES
    ):
        raise ApiError(
            422,
            "language_unsupported",
            f"No configured TTS engine speaks '{payload.language}'.",
            field="language",
        )
    try:
        voices = voice_map_for(payload.voice) if payload.voice else {}
    except UnknownVoice as exc:
        raise ApiError(422, "unknown_voice", str(exc), field="voice") from exc
    slot = slot_take(request.auth.pk)
    if slot is None:
        raise ApiError(
            429,
            "rate_limited",
            f"This user already has {settings.TTS_CONCURRENT_PER_USER} speech requests running "
            "(TTS_CONCURRENT_PER_USER); retry when one has finished.",
            headers={"Retry-After": "1"},
        )
    try:
        stream = await synthesize_pieces(payload.text, language=payload.language, voices=voices)
        body = await tts_body(stream, payload.format)
    except NothingToSay as exc:
        slot.release()
        raise ApiError(422, "nothing_to_say", str(exc), field="text") from exc
    except TtsFailed as exc:
        slot.release()
        raise ApiError(422, "tts_failed", str(exc)) from exc
    except TtsUnavailable as exc:
        slot.release()
        raise ApiError(503, "tts_unavailable", str(exc)) from exc
    except BaseException:
        slot.release()
        raise
    if body.data is None:
        response = StreamingHttpResponse(
            _releasing(body.chunks, slot), content_type=body.content_type
        )
        # A response never sent (the client left first) still gives its slot back.
        weakref.finalize(response, slot.release)
    else:
        slot.release()
        response = HttpResponse(body.data, content_type=body.content_type)
    response["X-Voz-Engine"] = stream.engine
    if stream.voice:
        response["X-Voz-Voice"] = stream.voice
    response["X-Voz-Sample-Rate"] = str(body.sample_rate)
    response["Cache-Control"] = "no-store"
    return response


async def _releasing(chunks: AsyncIterator[bytes], slot: TtsSlot) -> AsyncIterator[bytes]:
    """`chunks`, then the user's TTS slot given back (also when the client leaves early)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        slot.release()


@router.get("/voices", summary="TTS engines, whether each is available, and their voices")
async def list_voices(request: HttpRequest):
    return {"engines": await asyncio.to_thread(engines_report)}
