"""The speech-to-text interface: one recogniser per session, fed PCM16 mono chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from audio_pipeline.formats import StreamResampler

T = TypeVar("T")


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the session's audio
    end: float
    conf: float  # 0..1


@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool
    words: tuple[Word, ...] = ()


class SpeechRecognizer(Protocol):
    """One per session. Blocking methods: callers run them off the event loop."""

    sample_rate: int
    engine: str

    def accept(self, pcm16: bytes) -> list[Transcript]:
        """Feed audio; returns partials when they change and finals at endpoints."""
        ...

    def finish(self) -> Transcript:
        """Flush: the final result of what is buffered."""
        ...

    def reset(self) -> None: ...


class SttUnavailable(RuntimeError):
    """No configured STT engine can serve this language."""


class AsyncTranscriber:
    """Runs a recogniser on its own single thread, so calls keep their order off the loop.

    `input_rate` other than the recogniser's rate is resampled on the way in.
    """

    def __init__(self, recognizer: SpeechRecognizer, *, input_rate: int | None = None) -> None:
        self.recognizer = recognizer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt")
        rate = input_rate or recognizer.sample_rate
        self._resampler = StreamResampler(rate, recognizer.sample_rate)

    @property
    def engine(self) -> str:
        return self.recognizer.engine

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def accept(self, pcm16: bytes) -> list[Transcript]:
        return await self._run(self._accept, pcm16)

    async def finish(self) -> Transcript:
        return await self._run(self._finish)

    async def reset(self) -> None:
        await self._run(self.recognizer.reset)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _accept(self, pcm16: bytes) -> list[Transcript]:
        return self.recognizer.accept(self._resampler.process(pcm16))

    def _finish(self) -> Transcript:
        tail = self._resampler.process(b"", last=True)
        results = self.recognizer.accept(tail) if tail else []
        final = self.recognizer.finish()
        earlier = " ".join(r.text for r in results if r.final and r.text)
        if earlier:  # An endpoint inside the flushed tail: keep its words too.
            words = tuple(w for r in results if r.final for w in r.words) + final.words
            return Transcript(f"{earlier} {final.text}".strip(), True, words)
        return final
