"""One session's hearing: voice activity and end of turn on their own thread, in order.

`AsyncHearing.feed(pcm16)` resamples the session's input to 16 kHz, runs Silero VAD and keeps
the turn's audio for Smart Turn; `verdict()` asks the end-of-turn detector. Both are blocking
work, so they run on one worker thread (calls keep their order), never on the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .formats import StreamResampler
from .turn import EndOfTurn, TurnVerdict
from .vad import SAMPLE_RATE, VadEvent, VoiceActivityDetector


@dataclass(frozen=True)
class VadUpdate:
    events: tuple[VadEvent, ...]
    position_ms: float  # stream time analysed so far
    in_speech: bool
    speech_start_ms: float | None  # start of the speech in progress, if any


class AsyncHearing:
    def __init__(
        self, vad: VoiceActivityDetector, end_of_turn: EndOfTurn, *, input_rate: int
    ) -> None:
        self.vad = vad
        self.end_of_turn = end_of_turn
        self._resampler = StreamResampler(input_rate, SAMPLE_RATE)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hearing")
        self._speech_start: float | None = None

    @property
    def engine(self) -> str:
        """The end-of-turn detector: "smart_turn" or "silence"."""
        return self.end_of_turn.engine

    async def _run(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def feed(self, pcm16: bytes) -> VadUpdate:
        return await self._run(self._feed, pcm16)

    async def verdict(self) -> TurnVerdict:
        return await self._run(self.end_of_turn.verdict)

    async def new_turn(self) -> None:
        """The turn ended: its audio is forgotten (the VAD's clock goes on)."""
        await self._run(self.end_of_turn.reset)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _feed(self, pcm16: bytes) -> VadUpdate:
        audio = self._resampler.process(pcm16)
        self.end_of_turn.add_audio(audio)
        events = tuple(self.vad.feed(audio))
        for event in events:
            if event.kind == "start":
                self._speech_start = event.at_ms
            elif event.kind == "stop":
                self._speech_start = None
        return VadUpdate(events, self.vad.position_ms, self.vad.in_speech, self._speech_start)


def open_hearing(input_rate: int) -> AsyncHearing:
    """A session's hearing with the settings' VAD and end-of-turn detector (blocking: the
    Smart Turn model may load; it is loaded once per process)."""
    return AsyncHearing(VoiceActivityDetector(), EndOfTurn(), input_rate=input_rate)
