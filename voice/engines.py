"""The voice loop's only door to the engines: STT, TTS, sentence splitting and the model.

Everything vendor-specific lives behind `audio_pipeline` and `conversation`; this module adapts
their interfaces to the small calls the pipeline stages make.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async


@dataclass(frozen=True)
class SentenceAudio:
    data: bytes
    format: str
    sample_rate: int
    engine: str


def open_recognizer(language: str):
    """A per-session recogniser (blocking methods; call them off the event loop)."""
    from audio_pipeline import stt

    return stt.create_recognizer(language)


def resample_pcm16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    if from_rate == to_rate:
        return pcm
    from audio_pipeline import formats

    return formats.resample_pcm16(pcm, from_rate, to_rate)


def sentence_splitter():
    from audio_pipeline import sentences

    return sentences.SentenceSplitter()


def speakable(text: str) -> str:
    from audio_pipeline import sentences

    return sentences.speakable(text)


async def synthesize_sentence(
    text: str, *, language: str, voices: dict[str, str], output_format: str
) -> SentenceAudio:
    """One sentence as one complete, playable unit in the session's output format."""
    from audio_pipeline import tts

    stream = await tts.synthesize_with_fallback(text, language=language, voices=voices)
    chunks = [chunk async for chunk in stream]
    data, sample_rate = await sync_to_async(_complete_audio, thread_sensitive=False)(
        chunks, output_format
    )
    return SentenceAudio(data, output_format, sample_rate, stream.engine)


def _complete_audio(chunks: list, output_format: str) -> tuple[bytes, int]:
    """Join an engine's chunks (raw PCM16 pieces, or pieces of one MP3 stream) and encode."""
    from audio_pipeline import formats

    rate = chunks[0].sample_rate
    if chunks[0].format == "pcm16":
        pcm = b"".join(
            formats.resample_pcm16(chunk.data, chunk.sample_rate, rate) for chunk in chunks
        )
    else:
        joined = b"".join(chunk.data for chunk in chunks)
        pcm = formats.decode_audio(joined, target_rate=rate).pcm
    return formats.encode(pcm, rate, output_format), rate


async def start_reply(*, instance, user, text: str, conversation_id, channel: str = "ws"):
    """Stores the user's message and returns a turn whose reply can be streamed."""
    from conversation import services as conversation_services

    return await conversation_services.reply_start(
        instance=instance, user=user, text=text, conversation_id=conversation_id, channel=channel
    )


async def end_conversation(conversation_id) -> None:
    """Marks the conversation ended (which lets memory consolidation run in the background)."""
    from characters.models import Conversation
    from conversation import services as conversation_services

    conversation = await Conversation.objects.aget(pk=conversation_id)
    await conversation_services.conversation_end(conversation=conversation)
