"""Reply: user turn → stored message, model text deltas, and the stored reply (exactly once).

The conversation comes in as `open_turn(text, conversation_id)`, an async context manager in the
shape of `conversation.turns.reply_turn`: entering stores the user's message, exiting stores the
reply (marked interrupted when the exit is a cancellation). The reply stays open until the
deliver stage reports that its last frame reached the socket, so a barge-in while audio is still
going out is an interruption, and what is stored is what was heard.

No cancellation may lose what was stored: entering always runs to its end (the conversation id it
created is kept for the next turn, the message is echoed), and an interruption before the reply
began leaves the user's message stored with an empty reply marked interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from realtime.ids import new_id
from voice.frames import (
    Failure,
    Frame,
    Interruption,
    ReplyDone,
    ReplyEnded,
    ReplyStarted,
    Sentence,
    SentenceDelivered,
    SpeechDone,
    TentativeTurn,
    TextDelta,
    TextEnd,
    TranscriptStored,
    UserTurn,
)

from .base import Stage

logger = logging.getLogger(__name__)


class ReplyTurn(Protocol):
    """One exchange, as `conversation.turns.reply_turn` yields it. A model failure ends
    `deltas()` early with `error` set (an exception carrying `describe()`)."""

    conversation_id: Any
    user_message_id: Any
    reply_message_id: Any
    error: Any

    def deltas(self) -> AsyncIterator[str]: ...

    def heard(self, text: str) -> None: ...

    def add_timings(self, timings: dict[str, Any]) -> None: ...


OpenTurn = Callable[..., AbstractAsyncContextManager[ReplyTurn]]
# Refusals of a turn that the client meets under their own code (docs/protocol.md); any other
# failure to open a turn is `llm_failed`.
REFUSAL_CODES = frozenset({"turn_in_progress"})
Preempt = Callable[[str, Any], Awaitable[Any]]  # -> an early model stream with `.text`, or None
# A turn could not be opened: True when that ends the session (its instance was deleted), and
# the session says so itself; the turn then fails without `llm_failed`.
EndsSession = Callable[[BaseException], Awaitable[bool]]


@dataclass
class _Reply:
    """What the later stages reported about one reply."""

    id: str
    turn: UserTurn
    text: list[str] = field(default_factory=list)
    sentences: dict[int, str] = field(default_factory=dict)
    delivered: set[int] = field(default_factory=set)
    marks: dict[str, float] = field(default_factory=dict)
    spoken: asyncio.Event = field(default_factory=asyncio.Event)
    preempted: bool = False  # the model started before the turn was confirmed

    def mark(self, name: str, at: float) -> None:
        self.marks[name] = min(at, self.marks.get(name, at))

    def heard_text(self) -> str:
        return "".join(self.sentences[i] for i in sorted(self.delivered & self.sentences.keys()))

    def metrics(self) -> dict[str, Any]:
        def since(moment: float | None) -> float | None:
            return None if moment is None else round((moment - self.turn.speech_end) * 1000, 1)

        return {
            "turn_end_ms": since(self.turn.decided_at),
            "stt_final_ms": since(self.turn.final_at),
            "llm_first_token_ms": since(self.marks.get("llm_first_token")),
            "first_sentence_ms": since(self.marks.get("first_sentence")),
            "tts_first_audio_ms": since(self.marks.get("tts_first_audio")),
            "first_audio_ms": since(self.marks.get("first_audio")),
            "preempted": self.preempted,
        }


class ReplyStage(Stage):
    handles = (UserTurn,)
    work_in_task = True  # `stop` lets the turn in progress be stored (see below)

    def __init__(
        self,
        open_turn: OpenTurn,
        *,
        conversation_id: Any = None,
        clock: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = new_id,
        preempt: Preempt | None = None,
        ends_session: EndsSession | None = None,
    ) -> None:
        super().__init__()
        self._open_turn = open_turn
        self._ends_session = ends_session  # asked when a turn cannot be opened
        self._preempt = preempt  # start the model on a tentative turn (voice/preempt.py)
        self._early: asyncio.Task | None = None  # -> Preemption | None
        self.conversation_id = conversation_id
        self._clock = clock
        self._new_id = new_id
        self._reply: _Reply | None = None
        self._cancellable = False  # True once the user's message is stored
        self._cut_requested = False

    def cut(self, frame: Interruption) -> asyncio.Task | None:
        # Turns still waiting are stored, but get no reply: a newer one superseded them.
        self._queue = deque(
            replace(f, answer=False) if isinstance(f, UserTurn) else f
            for f in self._queue
            if not self.drops(f)
        )
        work = self._work
        if work is None or work.done():
            return None
        self._cut_requested = True
        if self._cancellable:
            work.cancel()
        return work

    async def accept(self, frame: Frame) -> None:
        if isinstance(frame, TentativeTurn):
            self._discard_early()
            if self._preempt is not None and self._reply is None:
                self._early = asyncio.create_task(self._preempt(frame.text, self.conversation_id))
            return
        await super().accept(frame)

    def _discard_early(self) -> None:
        early, self._early = self._early, None
        if early is None:
            return
        if not early.done():
            early.cancel()
        elif not early.cancelled() and early.exception() is None and early.result() is not None:
            early.result().cancel()

    async def _take_early(self, text: str):
        """The preemption started on exactly `text` (awaited if still starting), else None."""
        early, self._early = self._early, None
        if early is None:
            return None
        preemption = await asyncio.shield(early) if not early.done() else early.result()
        if preemption is not None and preemption.text != text:
            preemption.cancel()
            return None
        return preemption

    async def stop(self) -> None:
        """Before stopping, store the turns still waiting (without replies): nothing the user
        said is lost because the session closed."""
        self._discard_early()
        work, worker = self._work, self._worker
        if worker is not None:
            worker.cancel()
            await asyncio.wait({worker})
        if work is not None:
            await asyncio.wait({work})
        waiting = [f for f in self._queue if isinstance(f, UserTurn)]
        self._queue.clear()
        for turn in waiting:
            self._work = asyncio.create_task(self.process(replace(turn, answer=False)))
            await asyncio.wait({self._work})
        self._work = None
        await super().stop()

    def on_report(self, frame: Frame) -> None:
        reply = self._reply
        if reply is None or getattr(frame, "response_id", None) != reply.id:
            return
        if isinstance(frame, Sentence):
            reply.sentences[frame.index] = frame.text
            reply.mark("first_sentence", frame.at)
        elif isinstance(frame, SentenceDelivered):
            reply.delivered.add(frame.index)
            if frame.made_at is not None:
                reply.mark("tts_first_audio", frame.made_at)
                reply.mark("first_audio", frame.at)
        elif isinstance(frame, SpeechDone):
            reply.spoken.set()

    async def process(self, frame: Frame) -> None:
        assert isinstance(frame, UserTurn)
        reply = self._reply = _Reply(self._new_id(), frame)
        if not frame.answer:
            self._cut_requested = True
        self.report(ReplyStarted(reply.id))  # The turns stage knows the character is replying.
        try:
            await self._answer(reply)
        finally:
            self.report(ReplyEnded(reply.id))
            self._reply = None
            self._cancellable = False
            self._cut_requested = False

    async def _answer(self, reply: _Reply) -> None:
        try:
            preemption = await self._take_early(reply.turn.text)
        except Exception:
            preemption = None  # Preemption is an optimisation only.
        if preemption is not None:
            reply.preempted = True
            manager = self._open_turn(reply.turn.text, self.conversation_id, early=preemption)
        else:
            manager = self._open_turn(reply.turn.text, self.conversation_id)
        try:
            turn, cancelled = await _run_to_end(manager.__aenter__())
        except Exception as exc:  # The user's message could not be stored: nothing was.
            if self._ends_session is not None and await self._ends_session(exc):
                return
            code = getattr(exc, "code", None)
            if code in REFUSAL_CODES:
                await self.push(Failure(code, str(exc)))
            else:
                await self.push(Failure("llm_failed", describe(exc)))
            await self.push(self._done(reply, None, interrupted=False, error=describe(exc)))
            return
        self.conversation_id = turn.conversation_id
        rid = reply.id
        await self.push(
            TranscriptStored(
                rid, reply.turn.text, str(turn.user_message_id), str(turn.conversation_id)
            )
        )
        await self.push(ReplyStarted(rid))
        failure: BaseException | None = None
        error: str | None = None
        interrupted = False
        try:
            self._cancellable = True
            if cancelled or self._cut_requested:
                raise asyncio.CancelledError
            try:
                async for delta in turn.deltas():
                    if delta:
                        reply.mark("llm_first_token", self._clock())
                        reply.text.append(delta)
                        await self.push(TextDelta(rid, delta))
            except Exception as exc:  # An engine that raises instead of setting turn.error.
                failure = exc
            if failure is not None or getattr(turn, "error", None) is not None:
                error = describe(getattr(turn, "error", None) or failure)
                await self.push(Failure("llm_failed", error))
            await self.push(TextEnd(rid, complete=error is None))
            await reply.spoken.wait()
        except asyncio.CancelledError as exc:
            interrupted, failure = True, exc
            turn.heard(reply.heard_text().strip())
            _uncancel()
        finally:
            self._cancellable = False
        turn.add_timings(reply.metrics())
        try:
            await _run_to_end(manager.__aexit__(*_exc_info(failure)))
        except Exception as exc:
            logger.exception("Could not store reply %s", rid)
            error = error or describe(exc)
        if getattr(turn, "error", None) is not None:  # e.g. the reply could not be stored
            error = describe(turn.error)
        text = reply.heard_text() if interrupted else "".join(reply.text)
        await self.push(self._done(reply, turn, interrupted=interrupted, error=error, text=text))

    def _done(
        self,
        reply: _Reply,
        turn: ReplyTurn | None,
        *,
        interrupted: bool,
        error: str | None,
        text: str = "",
    ) -> ReplyDone:
        message_id = getattr(turn, "reply_message_id", None)
        return ReplyDone(
            reply.id,
            text=text.strip(),
            interrupted=interrupted,
            message_id=None if message_id is None else str(message_id),
            conversation_id=None if self.conversation_id is None else str(self.conversation_id),
            error=error,
            metrics=reply.metrics(),
        )


async def _run_to_end(awaitable) -> tuple[Any, bool]:
    """Await `awaitable` to its end even if we are cancelled meanwhile (what it stores must not
    be orphaned). Returns its result and whether a cancellation arrived (then swallowed)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
            _uncancel()


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


def _exc_info(exc: BaseException | None) -> tuple[Any, Any, Any]:
    return (None, None, None) if exc is None else (type(exc), exc, exc.__traceback__)


def describe(exc: BaseException) -> str:
    """An error for people: `code: message` when the exception carries a code."""
    if callable(getattr(exc, "describe", None)):
        return exc.describe()
    code = getattr(exc, "code", None)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}" if isinstance(code, str) and code else text
