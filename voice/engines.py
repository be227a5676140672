"""The voice loop's only door to the engines: STT, TTS, sentence splitting and conversations.

Everything vendor-specific lives behind `audio_pipeline` and `conversation`; this module adapts
their interfaces to the small callables the stages take (see voice/stages/).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from audio_pipeline import formats, sentences, stt, tts
from characters.models import Conversation
from conversation import services as conversation_services
from conversation import turns


@dataclass(frozen=True)
class SynthesisedAudio:
    """One sentence's audio, complete and playable."""

    data: bytes
    format: str
    sample_rate: int
    engine: str
    duration_ms: float | None = None  # how long it plays


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


async def language_spoken(language: str, voices: dict[str, str]) -> bool:
    """Whether an engine of `language`'s TTS chain speaks it with a voice it has (the
    character's `voices`, or the engine's default for the language): without one every sentence
    would fail. Looked up off the event loop (espeak lists its voices with a subprocess, once)."""
    from audio_pipeline.tts.chain import chain_for

    def spoken(name: str) -> bool:
        engine = tts.ENGINES.get(name)
        return engine is not None and (
            engine.supports(language) and bool(voices.get(name) or engine.default_voice(language))
        )

    return await asyncio.to_thread(lambda: any(spoken(n) for n in chain_for(language)))


async def open_hearing(input_rate: int):
    """A session's voice activity and end-of-turn detection (audio_pipeline.hearing), opened off
    the event loop (the Smart Turn model loads once per process)."""
    from audio_pipeline.hearing import open_hearing as open_

    return await asyncio.to_thread(open_, input_rate)


def voice_activity_enabled() -> bool:
    """VAD_ENABLED and the Silero model present (without it, finals end turns as before)."""
    from django.conf import settings

    from audio_pipeline.models_packaged import silero_vad_path

    return settings.VAD_ENABLED and silero_vad_path().is_file()


def preemptive_generation() -> bool:
    from django.conf import settings

    return settings.PREEMPTIVE_GENERATION


def turn_min_delay_ms() -> float:
    from django.conf import settings

    return settings.TURN_MIN_DELAY_MS


def preemptor(*, instance):
    """`preempt(text, conversation_id)`: start the model early, privately (voice/preempt.py)."""
    from .preempt import preemptor as make

    return make(instance=instance)


def interrupt_min_speech_ms() -> float:
    from django.conf import settings

    return settings.INTERRUPT_MIN_SPEECH_MS


def sentence_splitter() -> sentences.SentenceSplitter:
    """The reply's first chunk may end at a clause (SENTENCE_FIRST_CLAUSE_WORDS), so audio
    starts sooner; later chunks are sentences."""
    return sentences.ReplySplitter()


def speakable(text: str) -> str:
    return sentences.speakable(text)


async def synthesize_sentence(
    text: str, *, language: str, voices: dict[str, str], output_format: str
) -> SynthesisedAudio:
    """One sentence as one complete, playable unit in the session's output format."""
    stream = await tts.synthesize_with_fallback(text, language=language, voices=voices)
    chunks = [chunk async for chunk in stream]
    first = chunks[0]
    data = b"".join(chunk.data for chunk in chunks)
    encoded = await asyncio.to_thread(
        formats.convert, data, first.format, first.sample_rate, output_format
    )
    duration_ms = None if encoded.duration_s is None else encoded.duration_s * 1000
    return SynthesisedAudio(
        encoded.data, output_format, encoded.sample_rate, stream.engine, duration_ms
    )


def reply_turn(*, instance, user, session_id: str):
    """`open_turn(text, conversation_id)` for the reply stage: `conversation.turns.reply_turn`
    on the `ws` channel. The voice loop publishes its own observer events (in wire order)."""

    def open_turn(text: str, conversation_id: Any, early=None):
        """`early`: a preemption (voice/preempt.py) the model may continue from."""
        engine = None
        if early is not None:
            from .preempt import HandOver

            engine = HandOver(early.engine, early)
        return turns.reply_turn(
            instance=instance,
            user=user,
            text=text,
            conversation_id=conversation_id,
            channel="ws",
            observe=False,
            session_id=session_id,
            engine=engine,
            # The session is live: silence long enough for the idle sweep does not end it.
            continue_ended=True,
        )

    return open_turn


async def conversation_check(*, instance, user, conversation_id: Any) -> bool:
    """Whether the session may continue `conversation_id` (the user's, this instance's, open)."""
    try:
        await turns.conversation_open(
            instance=instance, user=user, conversation_id=conversation_id, channel="ws"
        )
    except (turns.ConversationNotFound, turns.ConversationEnded):
        return False
    return True


async def end_conversation(conversation_id) -> None:
    """Marks the conversation ended (memory consolidation then runs in the background)."""
    conversation = await Conversation.objects.aget(pk=conversation_id)
    await conversation_services.conversation_end(conversation=conversation)
