"""The voice loop's only door to the engines: STT, TTS, sentence splitting and conversations.

Everything vendor-specific lives behind `audio_pipeline` and `conversation`; this module adapts
their interfaces to the small callables the stages take (see voice/stages/).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from audio_pipeline import formats, sentences, stt, tts
from characters.models import Conversation
from conversation import services as conversation_services
from conversation.engines import LlmError


@dataclass(frozen=True)
class SentenceAudio:
    data: bytes
    format: str
    sample_rate: int
    engine: str


def stt_engine_name(language: str) -> str | None:
    """The STT engine a session in `language` would use, without loading it (None: none can)."""
    return stt.effective_engine(language)[0]


async def open_transcriber(language: str, input_rate: int) -> stt.AsyncTranscriber:
    """A per-session recogniser on its own thread, resampling `input_rate` on the way in.

    Loading is blocking, so it runs in a worker thread. Raises `stt.SttUnavailable`.
    """
    return await asyncio.to_thread(
        lambda: stt.AsyncTranscriber(stt.create_recognizer(language), input_rate=input_rate)
    )


def engine_names(language: str) -> dict[str, Any]:
    """The TTS chain and the reply engine a session in `language` will use (for clients)."""
    from django.conf import settings

    from audio_pipeline.tts.chain import chain_for

    return {"tts_engines": tuple(chain_for(language)), "llm_engine": settings.LLM_ENGINE}


def sentence_splitter() -> sentences.SentenceSplitter:
    return sentences.SentenceSplitter()


def speakable(text: str) -> str:
    return sentences.speakable(text)


async def synthesize_sentence(
    text: str, *, language: str, voices: dict[str, str], output_format: str
) -> SentenceAudio:
    """One sentence as one complete, playable unit in the session's output format."""
    stream = await tts.synthesize_with_fallback(text, language=language, voices=voices)
    chunks = [chunk async for chunk in stream]
    first = chunks[0]
    data = b"".join(chunk.data for chunk in chunks)
    encoded = await asyncio.to_thread(
        formats.convert, data, first.format, first.sample_rate, output_format
    )
    return SentenceAudio(encoded.data, output_format, encoded.sample_rate, stream.engine)


class _ServicesTurn:
    """The shape of `conversation.turns.reply_turn`'s turn over the current services."""

    def __init__(self, turn: conversation_services.Turn) -> None:
        self._turn = turn
        self.conversation_id = turn.conversation.id
        self.user_message_id = turn.user_message.id
        self.reply_message_id: Any = None
        self.error: str | None = None
        self._heard: str | None = None
        self._timings: dict[str, Any] = {}

    def deltas(self) -> AsyncIterator[str]:
        return self._turn.stream()

    def heard(self, text: str) -> None:
        self._heard = text

    def add_timings(self, timings: dict[str, Any]) -> None:
        self._timings.update(timings)


@asynccontextmanager
async def reply_turn(*, instance, user, text: str, conversation_id, channel: str = "ws"):
    """Enter: store the user's message. Exit: store the reply once, as heard, marked interrupted
    on cancellation and with the error on failure. (Until `conversation.turns` lands.)"""
    turn = _ServicesTurn(
        await conversation_services.reply_start(
            instance=instance,
            user=user,
            text=text,
            conversation_id=conversation_id,
            channel=channel,
        )
    )
    interrupted, error = False, None
    try:
        yield turn
    except asyncio.CancelledError:
        interrupted = True
        raise
    except Exception as exc:
        error = turn.error = (
            exc.describe() if isinstance(exc, LlmError) else f"internal: {type(exc).__name__}"
        )
        raise
    finally:
        message = await asyncio.shield(
            turn._turn.finish(
                spoken_text=turn._heard,
                interrupted=interrupted,
                error=error,
                timings=turn._timings,
            )
        )
        turn.reply_message_id = message.id


async def end_conversation(conversation_id) -> None:
    """Marks the conversation ended (memory consolidation then runs in the background)."""
    conversation = await Conversation.objects.aget(pk=conversation_id)
    await conversation_services.conversation_end(conversation=conversation)
