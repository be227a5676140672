"""Turns: finals and typed text → user turns; when to interrupt; the turn rate limit.

Turn detection (`session.start.turn_detection`):
- "server_vad" (default): with the hear stage (`voice_activity`), finals are accumulated and the
  hear stage's commit (voice activity stopped and the end-of-turn detector agreed) ends the turn;
  without it, each final transcript with words is a turn.
- None (manual, push-to-talk): finals are accumulated; only the committed final (from
  `input_audio.commit`) ends the turn, with everything heard since the last one.
Typed text is always a turn of its own. Interruption policy: with the hear stage, speech that
lasts the minimum interruption time (`BargeIn`), else a partial with words; `response.cancel` and
every new turn interrupt the reply in flight; a turn over its user's turn budget
(`allow_turn` answers with the refusal) is refused with that error and interrupts nothing.

False interruptions: while the character is speaking (a reply in flight, or its delivered audio
still playing at the client by the audio's own duration), a turn that voice activity ended but
whose speech never lasted the minimum interruption time ("mm", "uh-huh") is not a turn: it is
announced as `IgnoredTurn` and the reply goes on (LiveKit Agents' `min_interruption_duration`
rule). A turn the client commits (push-to-talk) is always a turn.

Speech that does last the minimum while the character speaks (server_vad only) first *pauses* the
reply (`PauseReply`: the deliver stage holds its output; the client pauses playback on
`input_audio.speech_started`). Words (a partial or final with text) then cut it as an
interruption; if the speech ends without any (a cough, a laugh, a door) the reply resumes
(`ResumeReply`), as does one held longer than `pause_limit_s` (LiveKit Agents'
`resume_false_interruption`). Push-to-talk speech is meant: it interrupts at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from voice.frames import (
    BargeIn,
    ClientCancel,
    Failure,
    Final,
    Frame,
    IgnoredTurn,
    Interruption,
    Partial,
    PauseReply,
    ReplyEnded,
    ReplyStarted,
    ResumeReply,
    SentenceDelivered,
    TentativeTurn,
    TypedText,
    UserTurn,
)

from .base import Stage

SERVER_VAD = "server_vad"


class TurnsStage(Stage):
    handles = (Partial, Final, TypedText, ClientCancel, BargeIn)

    def __init__(
        self,
        *,
        turn_detection: str | None = SERVER_VAD,
        allow_turn: Callable[[], Awaitable[Failure | None]] | None = None,
        voice_activity: bool = False,
        clock: Callable[[], float] = time.monotonic,
        pause_limit_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.manual = turn_detection is None
        # With the hear stage: its BargeIn (speech long enough) interrupts, not any partial, and
        # in server_vad mode its commits (VAD + end of turn) end turns, as the client's do.
        self.voice_activity = voice_activity
        self.held_until_commit = self.manual or voice_activity
        self._allow_turn = allow_turn  # -> None, or the refusal to send instead of the turn
        self._held: list[Final] = []  # manual mode: finals heard since the last commit
        self._clock = clock
        self._barged = False  # a BargeIn (speech long enough to interrupt) since the last turn
        self._replying: str | None = None  # the reply the reply stage is working on
        self._audible_until = 0.0  # when the client should finish playing what was delivered
        self._paused = False  # the reply is held until words are heard or the speech ends
        self._pause_limit_s = pause_limit_s
        self._pause_timer: asyncio.Task | None = None

    def on_report(self, frame: Frame) -> None:
        if isinstance(frame, ReplyStarted):
            self._replying = frame.response_id
        elif isinstance(frame, ReplyEnded) and frame.response_id == self._replying:
            self._replying = None
        elif isinstance(frame, SentenceDelivered) and frame.duration_ms:
            # The client plays sentences one after another, from when each arrives at the latest.
            start = max(self._audible_until, frame.at)
            self._audible_until = start + frame.duration_ms / 1000

    def on_interruption(self, frame: Interruption) -> None:
        self._audible_until = 0.0  # The client stops playing.
        self._end_pause()

    async def stop(self) -> None:
        self._end_pause()
        await super().stop()

    # Pause and resume (false interruptions with speech long enough) ---------------------------

    async def _pause(self) -> None:
        self._paused = True
        self._pause_timer = asyncio.create_task(self._resume_later(), name="TurnsStage.pause")
        await self.push(PauseReply())

    async def _resume_later(self) -> None:
        await asyncio.sleep(self._pause_limit_s)
        self._pause_timer = None  # Ending here: _resume must not cancel this very task.
        await self._resume()

    async def _resume(self) -> None:
        if self._paused:
            self._end_pause()
            await self.push(ResumeReply(self._replying))

    def _end_pause(self) -> None:
        self._paused = False
        timer, self._pause_timer = self._pause_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def character_speaking(self) -> bool:
        """A reply is in flight, or its delivered audio is still playing at the client."""
        return self._replying is not None or self._clock() < self._audible_until

    def _false_interruption(self, final: Final) -> bool:
        """Speech that voice activity ended while the character spoke, never long enough to
        interrupt it (the client's own commits always count)."""
        return (
            self.voice_activity
            and (final.decided_at is not None or final.tentative)
            and not self._barged
            and self.character_speaking()
        )

    async def _interrupt(self, reason: str) -> None:
        self.on_interruption(Interruption(reason))
        await self.push(Interruption(reason))

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, Partial):
            await self.push(frame)  # First, so the client sees it before the reply stops.
            if not self.voice_activity or (self._paused and frame.text.strip()):
                await self._interrupt("barge-in")
        elif isinstance(frame, BargeIn):
            self._barged = True
            await self.push(frame)  # The client pauses (or stops) its playback on it.
            if not self.manual and not self._paused and self.character_speaking():
                await self._pause()
            elif not self._paused:
                await self._interrupt("barge-in")
        elif isinstance(frame, ClientCancel):
            await self._interrupt("cancel")
        elif isinstance(frame, TypedText):
            await self._turn(UserTurn(frame.text, speech_end=frame.at, final_at=frame.at))
        elif isinstance(frame, Final):
            await self._final(frame)

    async def _final(self, final: Final) -> None:
        if self._paused and final.text:
            await self._interrupt("barge-in")  # Words: a real interruption.
        if self.held_until_commit and (not final.committed or final.tentative):
            if final.text:
                self._held.append(final)
            if final.tentative and self._held and not self._false_interruption(final):
                await self.push(TentativeTurn(" ".join(part.text for part in self._held)))
            return
        heard = [*self._held, final] if self.held_until_commit else [final]
        self._held = []
        false_interruption = self._false_interruption(final)
        self._barged = False
        spoken = [part for part in heard if part.text]
        if not spoken:
            await self._resume()  # The speech ended without words: a false interruption.
            return
        text = " ".join(part.text for part in spoken)
        if false_interruption:
            await self.push(IgnoredTurn(text))
            return
        speech_end = final.speech_end if final.decided_at is not None else spoken[-1].speech_end
        await self._turn(UserTurn(text, speech_end, final.final_at, decided_at=final.decided_at))

    async def _turn(self, turn: UserTurn) -> None:
        refusal = await self._allow_turn() if self._allow_turn is not None else None
        if refusal is not None:
            await self.push(refusal)
            return
        await self._interrupt("new turn")
        await self.push(turn)
