"""Plain in-memory stand-ins for the engines the stages take (no threads, no I/O)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stored:
    role: str
    text: str
    conversation_id: str
    interrupted: bool = False
    error: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)


class ModelFailed(Exception):
    def describe(self) -> str:
        return f"llm_error: {self}"


@dataclass
class FakeTurn:
    conversation_id: str
    user_message_id: str
    replies: list[str]
    fail_after: int | None = None
    step: int = 0
    reply_message_id: str | None = None
    error: Exception | None = None
    heard_text: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)

    async def deltas(self):
        for position, delta in enumerate(self.replies):
            if self.fail_after is not None and position >= self.fail_after:
                self.error = ModelFailed("the model went away")  # reply_turn: no raise
                return
            for _ in range(self.step):
                await asyncio.sleep(0)
            yield delta

    def heard(self, text: str) -> None:
        self.heard_text = text

    def add_timings(self, timings: dict[str, Any]) -> None:
        self.timings.update(timings)


class FakeConversation:
    """The contract of `conversation.turns.reply_turn`, in memory, with a plain (unshielded)
    enter that takes `store_steps` loop turns: the stage must not lose what it stores."""

    def __init__(
        self,
        reply: list[str] | None = None,
        *,
        store_steps: int = 3,
        delta_steps: int = 1,
        fail_after: int | None = None,
        fail_enter: bool = False,
    ) -> None:
        self.reply = reply if reply is not None else ["Hello. ", "How are ", "you?"]
        self.store_steps = store_steps
        self.delta_steps = delta_steps
        self.fail_after = fail_after
        self.fail_enter = fail_enter
        self.messages: list[Stored] = []
        self.prompts: list[list[str]] = []  # the history each turn's model call would see
        self.conversations: set[str] = set()

    def open_turn(self, text: str, conversation_id: Any):
        return self._turn(text, conversation_id)

    @asynccontextmanager
    async def _turn(self, text: str, conversation_id: Any):
        for _ in range(self.store_steps):
            await asyncio.sleep(0)
        if self.fail_enter:
            raise RuntimeError("database unavailable")
        conversation_id = conversation_id or f"c{len(self.conversations) + 1}"
        self.conversations.add(conversation_id)
        self.messages.append(Stored("user", text, conversation_id))
        self.prompts.append([m.text for m in self.messages if m.text])
        turn = FakeTurn(
            conversation_id,
            f"m{len(self.messages)}",
            list(self.reply),
            fail_after=self.fail_after,
            step=self.delta_steps,
        )
        interrupted, error = False, None
        try:
            yield turn
        except asyncio.CancelledError:
            interrupted = True
            raise
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            done = turn.fail_after if turn.fail_after is not None else len(turn.replies)
            produced = turn.replies[:done]
            text = turn.heard_text if turn.heard_text is not None else "".join(produced)
            error = error or (turn.error.describe() if turn.error else None)
            self.messages.append(
                Stored("assistant", text, conversation_id, interrupted, error, turn.timings)
            )
            turn.reply_message_id = f"m{len(self.messages)}"


@dataclass(frozen=True)
class Audio:
    data: bytes
    format: str = "pcm16"
    sample_rate: int = 16000
    engine: str = "fake"


class FakeVoice:
    """Synthesis that takes `steps` loop turns, or waits for `gate`, or fails for some texts.
    With `allow`, only that many sentences are ever synthesised (the rest wait forever)."""

    def __init__(
        self, *, steps: int = 2, fail_on: str | None = None, allow: int | None = None
    ) -> None:
        self.steps = steps
        self.fail_on = fail_on
        self.gate: asyncio.Event | None = None
        self.permits = None if allow is None else asyncio.Semaphore(allow)
        self.spoken: list[str] = []

    async def __call__(self, text: str) -> Audio:
        if self.gate is not None:
            await self.gate.wait()
        if self.permits is not None:
            await self.permits.acquire()
        for _ in range(self.steps):
            await asyncio.sleep(0)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("every voice failed")
        self.spoken.append(text)
        return Audio(text.encode())


@dataclass(frozen=True)
class Heard:
    text: str
    final: bool
    words: tuple = ()


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    conf: float = 1.0


class FakeRecogniser:
    """Hears what `script` says for each chunk (a list of Heard per accept call)."""

    def __init__(
        self, script: list[list[Heard]], at_finish: Heard | Exception | None = None
    ) -> None:
        self.script = list(script)
        self.at_finish = at_finish or Heard("", True)
        self.chunks: list[bytes] = []
        self.closed = False

    async def accept(self, pcm16: bytes) -> list[Heard]:
        self.chunks.append(pcm16)
        return self.script.pop(0) if self.script else []

    async def finish(self) -> Heard:
        if isinstance(self.at_finish, Exception):
            raise self.at_finish
        return self.at_finish

    def close(self) -> None:
        self.closed = True
