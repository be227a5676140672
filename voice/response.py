"""One reply as a pipeline of two async stages: model tokens → sentences → audio.

The model stage streams deltas and cuts sentences; the speech stage synthesises each sentence as
soon as it is complete, in order, while the model keeps generating. Cancelling the run (barge-in,
`response.cancel`, a new turn, a disconnect) stops both at once; the stored reply then holds only
the sentences whose audio was actually sent, marked interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import engines
from .outbox import Outbox
from .protocol import str_or_none

logger = logging.getLogger(__name__)


@dataclass
class TurnInput:
    text: str
    speech_end: float  # monotonic time the user stopped speaking (or sent the text)
    final_at: float  # monotonic time the final transcript was known


@dataclass
class SessionContext:
    """What a reply needs from its session."""

    user: Any
    instance: Any
    language: str
    voices: dict[str, str]
    output_format: str
    conversation_id: Any = None


@dataclass
class ResponseRun:
    context: SessionContext
    turn_input: TurnInput
    outbox: Outbox
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    generated: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    sent_indices: set[int] = field(default_factory=set)
    marks: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    message_id: Any = None
    task: asyncio.Task | None = None
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    async def run(self) -> None:
        turn = None
        speech_task: asyncio.Task | None = None
        try:
            turn = await engines.start_reply(
                instance=self.context.instance,
                user=self.context.user,
                text=self.turn_input.text,
                conversation_id=self.context.conversation_id,
            )
            self.context.conversation_id = turn.conversation.id
            self.outbox.event(
                {
                    "type": "transcript.final",
                    "text": self.turn_input.text,
                    "message_id": str(turn.user_message.id),
                    "conversation_id": str(turn.conversation.id),
                },
                observe=True,
            )
            self.outbox.event({"type": "response.started", "response_id": self.id}, observe=True)
            sentence_queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
            speech_task = asyncio.create_task(self._speech_stage(sentence_queue))
            try:
                await self._model_stage(turn, sentence_queue)
            finally:
                sentence_queue.put_nowait(None)
            await speech_task
        except asyncio.CancelledError:
            self.interrupted = True
            self.outbox.drop_audio_of(self.id)
            if speech_task is not None:
                speech_task.cancel()
            raise
        except Exception as exc:
            self.error = _describe(exc)
            logger.warning("Reply %s failed: %s", self.id, self.error)
            self.outbox.event(
                {"type": "error", "code": "llm_failed", "message": self.error, "fatal": False}
            )
            if speech_task is not None:
                speech_task.cancel()
        finally:
            if turn is not None:
                await asyncio.shield(self._store(turn))
            self._announce_done()

    async def _model_stage(self, turn, sentence_queue: asyncio.Queue) -> None:
        splitter = engines.sentence_splitter()
        async for delta in turn.stream():
            if not delta:
                continue
            self._mark("llm_first_token")
            self.generated.append(delta)
            self.outbox.event(
                {"type": "response.text.delta", "response_id": self.id, "delta": delta},
                observe=True,
            )
            for sentence in splitter.feed(delta):
                self._queue_sentence(sentence, sentence_queue)
        for sentence in splitter.flush():
            self._queue_sentence(sentence, sentence_queue)

    def _queue_sentence(self, sentence: str, sentence_queue: asyncio.Queue) -> None:
        if not sentence.strip():
            return
        index = len(self.sentences)
        self.sentences.append(sentence)
        self._mark("first_sentence")
        self.outbox.event(
            {"type": "response.sentence", "response_id": self.id, "index": index, "text": sentence},
            observe=True,
        )
        sentence_queue.put_nowait((index, sentence))

    async def _speech_stage(self, sentence_queue: asyncio.Queue) -> None:
        while (item := await sentence_queue.get()) is not None:
            index, sentence = item
            speakable = engines.speakable(sentence)
            if not speakable.strip():
                self.sent_indices.add(index)  # Nothing to say aloud (an emoji, a bullet).
                continue
            try:
                audio = await engines.synthesize_sentence(
                    speakable,
                    language=self.context.language,
                    voices=self.context.voices,
                    output_format=self.context.output_format,
                )
            except Exception as exc:
                logger.warning("TTS failed for sentence %d of %s: %s", index, self.id, exc)
                self.sent_indices.add(index)  # Its text was sent; the user can read it.
                self.outbox.event(
                    {
                        "type": "error",
                        "code": "tts_failed",
                        "message": f"No audio for sentence {index}: {_describe(exc)}",
                        "fatal": False,
                    }
                )
                continue
            self._mark("tts_first_audio")
            self.outbox.audio(
                {
                    "type": "response.audio",
                    "response_id": self.id,
                    "index": index,
                    "format": audio.format,
                    "sample_rate": audio.sample_rate,
                    "bytes": len(audio.data),
                    "engine": audio.engine,
                },
                audio.data,
                response_id=self.id,
                on_sent=lambda index=index: self._audio_sent(index),
            )

    def _audio_sent(self, index: int) -> None:
        self.sent_indices.add(index)
        self._mark("first_audio")

    def spoken_text(self) -> str:
        """What the user got: every sentence if the reply ran to its end, else those sent."""
        if not self.interrupted:
            return "".join(self.generated).strip()
        return "".join(
            sentence for index, sentence in enumerate(self.sentences) if index in self.sent_indices
        ).strip()

    async def _store(self, turn) -> None:
        try:
            message = await turn.finish(
                spoken_text=self.spoken_text(),
                interrupted=self.interrupted,
                error=self.error,
                timings=self.metrics(),
            )
            self.message_id = getattr(message, "id", None)
        except Exception:
            logger.exception("Could not store reply %s", self.id)

    def _announce_done(self) -> None:
        done = {
            "type": "response.done",
            "response_id": self.id,
            "text": self.spoken_text(),
            "interrupted": self.interrupted,
            "message_id": str(self.message_id) if self.message_id else None,
            "conversation_id": str_or_none(self.context.conversation_id),
        }
        if self.error:
            done["error"] = self.error
        self.outbox.event(done, observe=True)
        self.outbox.event({"type": "metrics", "response_id": self.id, **self.metrics()})
        self._finished.set()

    def _mark(self, name: str) -> None:
        self.marks.setdefault(name, time.monotonic())

    def metrics(self) -> dict[str, float | None]:
        start = self.turn_input.speech_end

        def since(moment: float | None) -> float | None:
            return None if moment is None else round((moment - start) * 1000, 1)

        return {
            "stt_final_ms": since(self.turn_input.final_at),
            "llm_first_token_ms": since(self.marks.get("llm_first_token")),
            "first_sentence_ms": since(self.marks.get("first_sentence")),
            "tts_first_audio_ms": since(self.marks.get("tts_first_audio")),
            "first_audio_ms": since(self.marks.get("first_audio")),
        }

    async def cancel(self) -> None:
        """Stop now: no more tokens, no more audio; waits until the reply is stored."""
        if self.task is None or self.task.done():
            return
        if not self.interrupted:  # Cancel once: a second cancel would cut the shielded save.
            self.interrupted = True
            self.outbox.drop_audio_of(self.id)
            self.task.cancel()
        await asyncio.wait({self.task})  # Unlike `await task`, never re-raises our cancel.


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}" if isinstance(code, str) and code else text
