"""Replies from any OpenAI-compatible server, streamed with the official `openai` client.

Retries (with exponential backoff) happen only before the first token, for 429, 5xx and
connection errors; after text has started a failure is an `LlmStreamError` and is never retried,
so no text is ever duplicated. The client's own retries are off (`max_retries=0`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from realtime.ids import new_id

from .base import (
    ChatMessage,
    LlmAuthError,
    LlmBadRequestError,
    LlmConnectionError,
    LlmError,
    LlmQuotaError,
    LlmServerError,
    LlmStream,
    LlmStreamError,
    LlmTimeoutError,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass
class _State:
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def absorb(self, chunk: Any) -> str:
        """Record a chunk's metadata and return its text delta. `chunk` is the chunk's JSON as
        sent (a `chat.completion.chunk` object); parts of another shape are ignored."""
        if not isinstance(chunk, dict):
            return ""
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _count(usage.get("prompt_tokens"))
            self.completion_tokens = _count(usage.get("completion_tokens"))
        text = ""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                text += delta["content"]
            if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                self.finish_reason = choice["finish_reason"]
        return text


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refused_connection(exc: BaseException) -> str | None:
    """The message of a connect failure that is not a timeout (refused, unreachable, DNS) in
    `exc`'s causes, else None."""
    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 10:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return str(cause) or type(cause).__name__
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        model: str,
        connect_timeout: float,
        first_token_timeout: float,
        total_timeout: float,
        retries: int,
        backoff: float,
        default_max_tokens: int,
        default_temperature: float,
        http_transport: str = "aiohttp",
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url or DEFAULT_BASE_URL
        self.model = model
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.total_timeout = total_timeout
        self.retries = retries
        self.backoff = backoff
        self.default_max_tokens = default_max_tokens
        self.default_temperature = default_temperature
        self.http_transport = http_transport
        self._usage_option = True  # Dropped if the server refuses `stream_options`.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def default_model(self) -> str:
        return self.model

    def context_tokens(self, model: str) -> int | None:
        return None

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": self.model,
            "base_url_set": self.base_url != DEFAULT_BASE_URL,
            "api_key_set": bool(self._api_key),
            "first_token_timeout_s": self.first_token_timeout,
            "total_timeout_s": self.total_timeout,
            "retries": self.retries,
            "http_transport": self.http_transport,
        }

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LlmStream:
        request = {
            "model": model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": self.default_temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.default_max_tokens,
        }
        return LlmStream(request["model"], lambda stream: self._run(stream, request))

    def _client(self) -> openai.AsyncOpenAI:
        # httpx connection pools belong to one event loop: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # aiohttp: the SDK's documented transport "for improved concurrency". httpx's pool
            # probes every idle keep-alive connection (poll + getpeername) whenever a request
            # starts or ends: 23 % of the event loop at 200 sessions (docs/performance.md).
            http_client = (
                openai.DefaultAioHttpClient() if self.http_transport == "aiohttp" else None
            )
            client = openai.AsyncOpenAI(
                http_client=http_client,
                api_key=self._api_key or "not-needed",
                base_url=self.base_url,
                max_retries=0,
                timeout=openai.Timeout(self.total_timeout, connect=self.connect_timeout),
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close this event loop's client (its HTTP connections); a later request opens anew."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    async def _run(self, stream: LlmStream, request: dict) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        attempt = 0
        while True:
            state = _State()
            try:
                response, iterator, first = await self._open(request, state, deadline)
                break
            except LlmBadRequestError as exc:
                if self._usage_option and "stream_options" in str(exc):
                    self._usage_option = False
                    continue
                raise
            except LlmError as exc:
                delay = self.backoff * (2**attempt) * (1 + random.random() / 4)
                if not exc.retryable or attempt >= self.retries or loop.time() + delay > deadline:
                    raise
                attempt += 1
                logger.warning(
                    "LLM request failed before the first token (%s); retry %d/%d in %.2f s.",
                    exc.code,
                    attempt,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)
        try:
            if first:
                yield first
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise LlmTimeoutError(f"The reply took longer than {self.total_timeout:g} s.")
                try:
                    # Not wait_for: on Python 3.11 it can swallow a cancel landing with a chunk.
                    async with asyncio.timeout(remaining):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise LlmTimeoutError(
                        f"The reply took longer than {self.total_timeout:g} s."
                    ) from exc
                except Exception as exc:
                    raise LlmStreamError(
                        f"The stream was cut: {self._safe(str(exc) or type(exc).__name__)}"
                    ) from exc
                delta = state.absorb(chunk)
                if delta:
                    yield delta
            if state.finish_reason is None:
                raise LlmStreamError("The stream ended before the model finished its reply.")
            stream.finish(
                model=state.model,
                finish_reason=state.finish_reason,
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
            )
        finally:
            await response.close()

    async def _open(self, request: dict, state: _State, deadline: float) -> tuple[Any, Any, str]:
        """Send the request and wait for the first text (or the end): the retryable phase."""
        loop = asyncio.get_running_loop()
        limit = max(0.0, min(self.first_token_timeout, deadline - loop.time()))
        extra = {"stream_options": {"include_usage": True}} if self._usage_option else {}
        response = None
        try:
            async with asyncio.timeout(limit):
                # The SDK's documented low-level request rather than `chat.completions.create`,
                # which first walks every message through its TypedDict transform: 8 % of the
                # event loop at 200 sessions (docs/operations.md), for plain strings it leaves
                # unchanged. Auth, retries off, timeouts and errors are the same client's.
                # Chunks come as their JSON (`AsyncStream[object]`): building a typed chunk
                # object per token was 13 % of the event loop at 200 sessions.
                response = await self._client().post(
                    "/chat/completions",
                    body={**request, "stream": True, **extra},
                    cast_to=ChatCompletion,
                    stream=True,
                    stream_cls=openai.AsyncStream[object],
                    options={"idempotency_key": f"voz-{new_id()}"},  # Not the SDK's uuid4.
                )
                iterator = response.__aiter__()
                while True:
                    try:
                        chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        return response, iterator, ""
                    delta = state.absorb(chunk)
                    if delta:
                        return response, iterator, delta
        except BaseException as exc:
            if response is not None:
                await response.close()
            if isinstance(exc, TimeoutError):
                raise LlmTimeoutError(f"No first token within {limit:g} s.") from exc
            if isinstance(exc, openai.APIError):
                raise self._translate(exc) from exc
            if isinstance(exc, Exception):
                raise LlmConnectionError(
                    f"Connection failed: {self._safe(str(exc) or type(exc).__name__)}"
                ) from exc
            raise

    def _translate(self, exc: openai.APIError) -> LlmError:
        message = self._safe(getattr(exc, "message", None) or str(exc))
        refused = _refused_connection(exc)
        if refused is not None:
            # The aiohttp transport reports a refused or failed connect as a connect *timeout*.
            return LlmConnectionError(f"Could not reach the model server: {self._safe(refused)}")
        if isinstance(exc, openai.APITimeoutError):
            return LlmTimeoutError(f"The server did not answer in time: {message}", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            return LlmConnectionError(f"Could not reach the model server: {message}")
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return LlmAuthError(f"The model server refused the credentials ({status}): {message}")
        if status == 429:
            quota = getattr(exc, "code", None) == "insufficient_quota"
            return LlmQuotaError(f"Rate limit or quota (429): {message}", retryable=not quota)
        if status is not None and status >= 500:
            return LlmServerError(f"The model server failed ({status}): {message}")
        if status in (400, 404, 413, 422):
            return LlmBadRequestError(
                f"The model server rejected the request ({status}): {message}"
            )
        return LlmError(f"Model server error ({status}): {message}")

    def _safe(self, text: str) -> str:
        """Never let the API key through in an error message."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:300]
