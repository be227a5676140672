"""Speech services used by the HTTP API (and reusable elsewhere): whole-file STT and TTS bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from .formats import (
    DecodedAudio,
    Mp3StreamEncoder,
    content_type_for,
    convert,
    decode_audio,
)
from .stt import Transcript, Word, create_recognizer
from .tts import TtsStream

STT_CHUNK_SECONDS = 0.5


@dataclass(frozen=True)
class FileTranscript:
    text: str
    engine: str
    duration_s: float
    words: tuple[Word, ...]


def transcribe_file(data: bytes, *, content_type: str, language: str) -> FileTranscript:
    """Decode and recognise a whole upload (blocking: run it in a thread).

    Raises AudioFormatError, or AudioTooLong past STT_MAX_SECONDS (decoding stops there).
    """
    audio = decode_audio(
        data,
        content_type=content_type,
        target_rate=settings.STT_SAMPLE_RATE,
        max_seconds=settings.STT_MAX_SECONDS,
    )
    return recognise(audio, language)


def recognise(audio: DecodedAudio, language: str) -> FileTranscript:
    recognizer = create_recognizer(language, audio.sample_rate)
    step = int(audio.sample_rate * STT_CHUNK_SECONDS) * 2
    finals: list[Transcript] = []
    for offset in range(0, len(audio.pcm), step):
        finals += [t for t in recognizer.accept(audio.pcm[offset : offset + step]) if t.final]
    finals.append(recognizer.finish())
    return FileTranscript(
        " ".join(t.text for t in finals if t.text),
        recognizer.engine,
        round(audio.duration_s, 3),
        tuple(w for t in finals for w in t.words),
    )


@dataclass
class TtsBody:
    """What to send back for a TTS request: streamed `chunks`, or all of it in `data`."""

    chunks: AsyncIterator[bytes] | None
    data: bytes | None
    content_type: str
    sample_rate: int


async def tts_body(stream: TtsStream, fmt: str) -> TtsBody:
    """Shape an engine's stream into `fmt`, streaming whenever the format allows it."""
    first = stream.first
    content_type = content_type_for(fmt, first.sample_rate)
    if first.format == fmt == "mp3" or first.format == fmt == "pcm16":
        return TtsBody(_passthrough(stream), None, content_type, first.sample_rate)
    if first.format == "pcm16" and fmt == "mp3":
        return TtsBody(_encode_mp3(stream), None, content_type, first.sample_rate)
    data = b"".join([chunk.data async for chunk in stream])
    converted = await asyncio.to_thread(convert, data, first.format, first.sample_rate, fmt)
    return TtsBody(None, converted.data, converted.content_type, converted.sample_rate)


async def _passthrough(stream: TtsStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk.data


async def _encode_mp3(stream: TtsStream) -> AsyncIterator[bytes]:
    encoder = Mp3StreamEncoder(stream.first.sample_rate)
    async for chunk in stream:
        if data := await asyncio.to_thread(encoder.encode, chunk.data):
            yield data
    yield await asyncio.to_thread(encoder.flush)
