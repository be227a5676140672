"""Hear: voice activity (Silero VAD) and end of turn (Smart Turn, else silence) on the input audio.

Sits before the recognise stage. Audio passes on at once (recognition never waits for it) and is
also analysed, in order, by an injected `Hearing` (audio_pipeline.hearing.AsyncHearing):

- speech that has lasted `interrupt_min_speech_ms` sends `BargeIn` (the turns stage interrupts
  the reply): a cough, a short "mm" or a noise burst does not, a real sentence does at once;
- when speech stops, the end-of-turn detector says how much silence ends the turn; once that much
  silence has been heard (counted in audio time) with no new speech, a `Commit` ends it (the
  recogniser flushes its final; `at` is where the speech ended). Speech before then continues the
  same turn. With `turn_detection: null` (push-to-talk) no commit is sent: the client's ends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from voice.clock import SpeechClock
from voice.frames import AudioIn, BargeIn, Commit, Frame

from .base import Stage

logger = logging.getLogger(__name__)


class Hearing(Protocol):
    """What the stage needs (audio_pipeline.hearing.AsyncHearing)."""

    engine: str

    async def feed(self, pcm16: bytes): ...  # -> VadUpdate

    async def verdict(self): ...  # -> TurnVerdict

    async def new_turn(self) -> None: ...

    def close(self) -> None: ...


OpenHearing = Callable[[], Awaitable[Hearing]]


class HearStage(Stage):
    handles = ()

    def __init__(
        self,
        open_hearing: OpenHearing,
        *,
        input_rate: int,
        server_turns: bool = True,
        interrupt_min_speech_ms: float = 250.0,
        preempt_after_ms: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._open = open_hearing
        self._hearing: Hearing | None = None
        self._failed = False
        self._input_rate = input_rate
        self.server_turns = server_turns
        self.interrupt_min_speech_ms = interrupt_min_speech_ms
        # A turn that needs more silence than this to end gets a tentative commit at once (the
        # reply stage may start the model early); None: never.
        self.preempt_after_ms = preempt_after_ms
        self._clock = clock
        self._speech_clock = SpeechClock(clock=clock)
        self._audio: asyncio.Queue[AudioIn] = asyncio.Queue()
        self._listener: asyncio.Task | None = None
        self._barged = False  # BargeIn sent for the speech in progress
        self._ending: tuple[float, float, str] | None = None  # (speech end ms, silence needed, by)
        self._turn_has_speech = False
        self._paused = False

    def start(self) -> None:
        super().start()
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="HearStage.listen")

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        hearing, self._hearing = self._hearing, None
        if hearing is not None:
            hearing.close()
        await super().stop()

    async def accept(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            self._audio.put_nowait(frame)
        elif isinstance(frame, Commit) and frame.decided_by is None:
            self._ending = None  # The client ended the turn itself.
            self._turn_has_speech = False
        await super().accept(frame)

    async def _listen(self) -> None:
        while True:
            frame = await self._audio.get()
            try:
                hearing = await self._hearing_or_none()
                if hearing is None:
                    continue
                self._speech_clock.add(len(frame.data) / 2 / self._input_rate, frame.at)
                update = await hearing.feed(frame.data)
                await self._update(hearing, update)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Voice activity detection failed")

    async def _hearing_or_none(self) -> Hearing | None:
        if self._hearing is None and not self._failed:
            try:
                self._hearing = await self._open()
            except Exception as exc:  # The recogniser's own endpointing still works.
                logger.warning("No voice activity detection: %s", exc)
                self._failed = True
        return self._hearing

    async def _update(self, hearing: Hearing, update) -> None:
        for event in update.events:
            self._paused = event.kind == "pause"
            if event.kind in ("start", "resume"):
                self._ending = None
                self._turn_has_speech = True
                if event.kind == "start":
                    self._barged = False
            elif event.kind == "stop" and self.server_turns and self._turn_has_speech:
                verdict = await hearing.verdict()
                self._ending = (event.at_ms, verdict.end_after_ms, verdict.engine)
                early = self.preempt_after_ms
                if early is not None and verdict.end_after_ms > early:
                    at = self._speech_clock.arrival_of(event.at_ms / 1000)
                    await self.push(Commit(at, decided_by=verdict.engine, tentative=True))
        speaking = update.in_speech and not self._paused  # a pause is not speech
        if speaking and not self._barged and update.speech_start_ms is not None:
            speech_ms = update.position_ms - update.speech_start_ms
            if speech_ms >= self.interrupt_min_speech_ms:
                self._barged = True
                began = self._speech_clock.arrival_of(update.speech_start_ms / 1000)
                await self.push(BargeIn(began, round(speech_ms, 1)))
        if self._ending is not None and not update.in_speech:
            speech_end_ms, needed_ms, by = self._ending
            if update.position_ms - speech_end_ms >= needed_ms:
                self._ending = None
                self._turn_has_speech = False
                at = self._speech_clock.arrival_of(speech_end_ms / 1000)
                await self.push(Commit(at, decided_by=by, decided_at=self._clock()))
                await hearing.new_turn()
