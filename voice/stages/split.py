"""Split: text deltas → numbered sentences, cut as soon as each one is certain to be complete.

Uses `audio_pipeline.sentences.SentenceSplitter` (injected as a factory). Each sentence also goes
upstream as a report, so the reply stage knows the text of what may later be heard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from voice.frames import Frame, Interruption, ReplyStarted, Sentence, TextDelta, TextEnd

from .base import Stage


class Splitter(Protocol):
    def feed(self, delta: str) -> list[str]: ...

    def flush(self) -> list[str]: ...


class SplitStage(Stage):
    handles = (ReplyStarted, TextDelta, TextEnd)

    def __init__(
        self, new_splitter: Callable[[], Splitter], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._new_splitter = new_splitter
        self._clock = clock
        self._splitter = new_splitter()
        self._index = 0

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, ReplyStarted):
            self._reset()
            await self.push(frame)
        elif isinstance(frame, TextDelta):
            await self.push(frame)
            for text in self._splitter.feed(frame.text):
                await self._sentence(frame.response_id, text)
        elif isinstance(frame, TextEnd):
            if frame.complete:
                for text in self._splitter.flush():
                    await self._sentence(frame.response_id, text)
            self._reset()
            await self.push(frame)

    async def _sentence(self, response_id: str, text: str) -> None:
        if not text.strip():
            return
        sentence = Sentence(response_id, self._index, text, self._clock())
        self._index += 1
        self.report(sentence)
        await self.push(sentence)

    def _reset(self) -> None:
        self._splitter = self._new_splitter()
        self._index = 0

    def on_interruption(self, frame: Interruption) -> None:
        self._reset()
