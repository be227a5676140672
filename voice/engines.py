"""The voice loop's only door to the engines: STT, TTS, sentence splitting and the model.

Everything vendor-specific lives behind `audio_pipeline` and `conversation`; this module adapts
their interfaces to the few calls the pipeline stages make.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from audio_pipeline import formats, sentences, stt, tts
from characters.models import Conversation
from conversation import services as conversation_services


@dataclass(frozen=True)
class SentenceAudio:
    data: bytes
    format: str
    sample_rate: int
    engine: str


def open_transcriber(language: str, input_rate: int) -> stt.AsyncTranscriber:
    """A per-session recogniser on its own thread, resampling `input_rate` on the way in.

    Loading a model is blocking: call this off the event loop. Raises `stt.SttUnavailable`.
    """
    return stt.AsyncTranscriber(stt.create_recognizer(language), input_rate=input_rate)


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


async def start_reply(*, instance, user, text: str, conversation_id, channel: str = "ws"):
    """Stores the user's message and returns a turn whose reply can be streamed."""
    return await conversation_services.reply_start(
        instance=instance, user=user, text=text, conversation_id=conversation_id, channel=channel
    )


async def end_conversation(conversation_id) -> None:
    """Marks the conversation ended (memory consolidation then runs in the background)."""
    conversation = await Conversation.objects.aget(pk=conversation_id)
    await conversation_services.conversation_end(conversation=conversation)
