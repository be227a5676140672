"""Speak: sentences → audio, one sentence at a time and in order.

`synthesise(text)` (injected) returns one sentence's complete audio in the session's output
format; `speakable(text)` cleans a sentence for speech. A sentence with nothing to say aloud, or
whose synthesis failed (its text still reached the client), is reported as delivered at once.
Only sentences and the reply's end wait for synthesis; text deltas and each sentence's text go
on at once, so the client reads while the audio is being made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from voice.frames import Failure, Frame, Sentence, SentenceAudio, SentenceDelivered, TextEnd

from .base import Stage
from .reply import describe

logger = logging.getLogger(__name__)


class Audio(Protocol):
    data: bytes
    format: str
    sample_rate: int
    engine: str


Synthesise = Callable[[str], Awaitable[Audio]]


class SpeakStage(Stage):
    handles = (Sentence,)

    def __init__(
        self,
        synthesise: Synthesise,
        speakable: Callable[[str], str] = str.strip,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._synthesise = synthesise
        self._speakable = speakable
        self._clock = clock

    async def accept(self, frame: Frame) -> None:
        if isinstance(frame, Sentence):
            await self.push(frame)  # Its text goes out now; its audio when synthesised.
        await super().accept(frame)

    def queues(self, frame: Frame) -> bool:
        # Only what must follow the audio waits: the rest of the reply's text passes at once.
        return isinstance(frame, (Sentence, TextEnd))

    async def process(self, frame: Frame) -> None:
        assert isinstance(frame, Sentence)
        text = self._speakable(frame.text)
        if not text.strip():  # An emoji, a bullet: nothing to say aloud.
            self.report(SentenceDelivered(frame.response_id, frame.index, self._clock()))
            return
        try:
            audio = await self._synthesise(text)
        except Exception as exc:
            logger.warning(
                "TTS failed for sentence %d of %s: %s", frame.index, frame.response_id, exc
            )
            self.report(SentenceDelivered(frame.response_id, frame.index, self._clock()))
            await self.push(
                Failure("tts_failed", f"No audio for sentence {frame.index}: {describe(exc)}")
            )
            return
        await self.push(
            SentenceAudio(
                frame.response_id,
                frame.index,
                audio.data,
                audio.format,
                audio.sample_rate,
                audio.engine,
                made_at=self._clock(),
                duration_ms=getattr(audio, "duration_ms", None),
            )
        )
