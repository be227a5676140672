"""Preemptive generation: start the model on a turn before it is confirmed, keep it private.

When the hear stage pauses on a likely end of turn, the reply stage calls `preempt(text,
conversation_id)`: the prompt is built exactly as `conversation.turns.reply_turn` will build it
(the same history, with the new text as the user's message) and the model starts streaming into a
buffer. Nothing is stored and nothing is sent. When the turn is confirmed, `reply_turn` gets a
`HandOver` engine: if its prompt is the very one already running, the buffered deltas (and the rest
as they come) are handed over; otherwise the early work is cancelled and the model starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async

from conversation.engines import ChatMessage, LlmEngine, LlmStream, get_engine
from conversation.selectors import history_load
from conversation.summary import reply_plan_for


class Preemption:
    """A model stream started early, buffering its deltas."""

    def __init__(self, text: str, engine: LlmEngine, messages: list, params: dict) -> None:
        self.text = text
        self.engine = engine
        self.messages = messages
        self.params = params
        self._stream = engine.stream(messages, **params)
        self._parts: list[str] = []
        self._more = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._pump(), name="preempt")

    async def _pump(self) -> None:
        try:
            async for delta in self._stream:
                self._parts.append(delta)
                self._more.set()
        except Exception as exc:  # Handed over as the confirmed stream's failure.
            self._error = exc
        finally:
            self._done = True
            self._more.set()

    def matches(self, messages: list, params: dict) -> bool:
        return self.messages == messages and self.params == params

    def cancel(self) -> None:
        """Discard the early work (silently: nothing of it was stored or sent)."""
        self._task.cancel()

    def hand_over(self) -> LlmStream:
        """The confirmed turn's stream: what was buffered, then the rest."""

        async def run(stream: LlmStream):
            sent = 0
            while True:
                while sent < len(self._parts):
                    sent += 1
                    yield self._parts[sent - 1]
                if self._done:
                    break
                self._more.clear()
                await self._more.wait()
            if self._error is not None:
                raise self._error
            result = self._stream.result
            stream.finish(
                model=result.model if result else None,
                finish_reason=result.finish_reason if result else None,
                prompt_tokens=result.prompt_tokens if result else None,
                completion_tokens=result.completion_tokens if result else None,
            )

        return LlmStream(self._stream.model, run)


class HandOver:
    """An `LlmEngine` for the confirmed turn: the preemptive stream when the prompt matches."""

    def __init__(self, engine: LlmEngine, preemption: Preemption) -> None:
        self._engine = engine
        self.preemption = preemption
        self.name = engine.name
        self.used = False

    def stream(self, messages: list[ChatMessage], **params: Any) -> LlmStream:
        if self.preemption.matches(messages, params):
            self.used = True
            return self.preemption.hand_over()
        self.preemption.cancel()
        return self._engine.stream(messages, **params)

    def default_model(self) -> str:
        return self._engine.default_model()

    def context_tokens(self, model: str) -> int | None:
        return self._engine.context_tokens(model)

    def describe(self) -> dict:
        return self._engine.describe()

    def __getattr__(self, name: str) -> Any:  # anything else the turn uses (summary folding)
        return getattr(self._engine, name)


def _messages(instance, engine: LlmEngine, text: str, conversation_id: Any) -> tuple[list, dict]:
    """The prompt and parameters `reply_turn` will use for `text` (blocking: reads history)."""
    summary, history = "", []
    if conversation_id is not None:
        summary, _, history = history_load(conversation_id)
    plan = reply_plan_for(engine, instance, text, summary, history)
    params = {"model": plan.model, "temperature": plan.temperature, "max_tokens": plan.max_tokens}
    return plan.messages, params


def preemptor(*, instance):
    """`preempt(text, conversation_id)` for the reply stage (None when it cannot start)."""

    async def preempt(text: str, conversation_id: Any) -> Preemption | None:
        engine = get_engine()
        with contextlib.suppress(Exception):  # Preemption is an optimisation only.
            messages, params = await sync_to_async(_messages)(
                instance, engine, text, conversation_id
            )
            return Preemption(text, engine, messages, params)
        return None

    return preempt
