"""Recognise: audio → partial and final transcripts.

The recogniser is opened lazily on the first audio frame (a text-only session never builds one)
through the injected `open_recogniser` (which runs off the event loop), and released by `close`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from voice.clock import SpeechClock
from voice.frames import AudioIn, Commit, Failure, Final, Frame, Partial

from .base import Stage

logger = logging.getLogger(__name__)

QUEUE_FRAMES = 500  # ≈20 s of 40 ms frames waiting for the recogniser


class Heard(Protocol):
    """What a recogniser returns (audio_pipeline.stt.Transcript)."""

    text: str
    final: bool
    words: tuple


class Recogniser(Protocol):
    """An open recogniser (audio_pipeline.stt.AsyncTranscriber)."""

    async def accept(self, pcm16: bytes) -> list[Heard]: ...

    async def finish(self) -> Heard: ...

    def close(self) -> None: ...


OpenRecogniser = Callable[[], Awaitable[Recogniser]]


class RecogniseStage(Stage):
    handles = (AudioIn, Commit)

    def __init__(
        self,
        open_recogniser: OpenRecogniser,
        *,
        input_rate: int,
        clock: Callable[[], float] = time.monotonic,
        max_queue: int = QUEUE_FRAMES,
    ) -> None:
        super().__init__()
        self._open = open_recogniser
        self._recogniser: Recogniser | None = None
        self._unavailable: str | None = None
        self._input_rate = input_rate
        self._clock = clock
        self._speech_clock = SpeechClock(clock=clock)
        self._max_queue = max_queue
        self._last_partial = ""
        self._told_behind = False

    @property
    def opened(self) -> bool:
        return self._recogniser is not None

    async def accept(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn) and len(self._queue) >= self._max_queue:
            if not self._told_behind:
                self._told_behind = True
                await self.push(
                    Failure("stt_failed", "Speech recognition is behind; audio was dropped.")
                )
            return
        await super().accept(frame)

    async def process(self, frame: Frame) -> None:
        try:
            if isinstance(frame, AudioIn):
                recogniser = await self._recogniser_or_none()
                if recogniser is None:
                    return
                self._speech_clock.add(len(frame.data) / 2 / self._input_rate, frame.at)
                for heard in await recogniser.accept(frame.data):
                    await self._heard(heard, committed=False)
            elif isinstance(frame, Commit):
                await self._commit(frame)
            self._told_behind = False
        except Exception as exc:
            logger.exception("Recognition failed")
            await self.push(Failure("stt_failed", f"Speech recognition failed: {exc}"))

    async def _commit(self, frame: Commit) -> None:
        """The utterance ends now: always a committed final (empty when nothing more was heard),
        so a turn held until the commit is never lost to a failing flush."""
        if self._recogniser is not None:
            try:
                await self._heard(await self._recogniser.finish(), committed=True, commit=frame)
                return
            except Exception as exc:
                logger.exception("Recognition failed at the commit")
                await self.push(Failure("stt_failed", f"Speech recognition failed: {exc}"))
        final = Final(
            "",
            frame.at,
            self._clock(),
            committed=True,
            decided_at=frame.decided_at,
            tentative=frame.tentative,
        )
        await self.push(final)

    async def _recogniser_or_none(self) -> Recogniser | None:
        if self._recogniser is None and self._unavailable is None:
            try:
                self._recogniser = await self._open()
            except Exception as exc:
                logger.warning("No recogniser: %s", exc)
                self._unavailable = str(exc)
                await self.push(Failure("stt_failed", f"Speech recognition is unavailable: {exc}"))
        return self._recogniser

    async def _heard(self, heard: Heard, *, committed: bool, commit: Commit | None = None) -> None:
        text = (heard.text or "").strip()
        if not heard.final:
            if text and text != self._last_partial:
                self._last_partial = text
                await self.push(Partial(text))
            return
        self._last_partial = ""
        words = heard.words or ()
        last_word_end = words[-1].end if words else None
        now = self._clock()
        if commit is not None and commit.decided_by is not None:
            speech_end = commit.at  # voice activity measured where the speech ended
        elif last_word_end is None:
            speech_end = now if committed else self._speech_clock.arrival_of(None)
        else:
            speech_end = self._speech_clock.arrival_of(last_word_end)
        decided_at = commit.decided_at if commit is not None else None
        tentative = commit is not None and commit.tentative
        if text or committed:
            await self.push(
                Final(
                    text,
                    speech_end,
                    now,
                    committed=committed,
                    decided_at=decided_at,
                    tentative=tentative,
                )
            )

    def close(self) -> None:
        """Release the recogniser (its thread and decoder)."""
        recogniser, self._recogniser = self._recogniser, None
        if recogniser is not None:
            recogniser.close()
