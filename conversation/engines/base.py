"""The small interface every reply engine implements, and its error types.

An engine's `stream()` returns an `LlmStream` at once (no I/O yet): iterating it yields text
deltas; when the iteration ends `.result` holds the `CompletionResult`; `aclose()` cancels.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass
class CompletionResult:
    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token_ms: float | None
    total_ms: float


class LlmError(Exception):
    """A reply could not be produced. `code` is stable and safe to show to clients."""

    code = "llm_error"
    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable

    def describe(self) -> str:
        """`"<code>: <message>"`, as stored in `Message.error` (at most 200 characters)."""
        return f"{self.code}: {self}"[:200]


class LlmAuthError(LlmError):
    code = "llm_auth"


class LlmQuotaError(LlmError):
    code = "llm_quota"
    retryable = True


class LlmTimeoutError(LlmError):
    code = "llm_timeout"


class LlmBadRequestError(LlmError):
    code = "llm_bad_request"


class LlmConnectionError(LlmError):
    code = "llm_connection"
    retryable = True


class LlmServerError(LlmError):
    code = "llm_server"
    retryable = True


class LlmStreamError(LlmError):
    """The stream was cut after text had started: never retried (no duplicate text)."""

    code = "llm_stream_cut"


class LlmStream:
    """Async iterator of text deltas over an engine's generator; `.result` is set at the end."""

    def __init__(self, model: str, run: Callable[[LlmStream], AsyncGenerator[str, None]]) -> None:
        self.model = model
        self.result: CompletionResult | None = None
        self.first_token_ms: float | None = None
        self.started = time.monotonic()
        self._parts: list[str] = []
        self._generator = run(self)

    @property
    def text(self) -> str:
        """Everything produced so far (the partial reply when the stream was cut)."""
        return "".join(self._parts)

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    def finish(
        self,
        *,
        model: str | None = None,
        finish_reason: str | None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Called by the engine once its generator is done."""
        self.result = CompletionResult(
            text=self.text,
            model=model or self.model,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            first_token_ms=self.first_token_ms,
            total_ms=self.elapsed_ms(),
        )

    def __aiter__(self) -> LlmStream:
        return self

    async def __anext__(self) -> str:
        delta = await self._generator.__anext__()
        if self.first_token_ms is None:
            self.first_token_ms = self.elapsed_ms()
        self._parts.append(delta)
        return delta

    async def aclose(self) -> None:
        await self._generator.aclose()

    async def collect(self) -> str:
        """Read the whole stream and return its text."""
        async for _ in self:
            pass
        return self.text


class LlmEngine(Protocol):
    name: str

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LlmStream: ...

    def default_model(self) -> str: ...

    def context_tokens(self, model: str) -> int | None:
        """The engine's own context limit for `model`, or None to use the model table."""
        ...

    def describe(self) -> dict: ...
