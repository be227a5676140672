"""Reply engines behind one interface; `get_engine()` picks one from settings."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.conf import settings

from .base import (
    ChatMessage,
    CompletionResult,
    LlmAuthError,
    LlmBadRequestError,
    LlmConnectionError,
    LlmEngine,
    LlmError,
    LlmQuotaError,
    LlmServerError,
    LlmStream,
    LlmStreamError,
    LlmTimeoutError,
)

__all__ = [
    "ChatMessage",
    "CompletionResult",
    "LlmAuthError",
    "LlmBadRequestError",
    "LlmConnectionError",
    "LlmEngine",
    "LlmError",
    "LlmQuotaError",
    "LlmServerError",
    "LlmStream",
    "LlmStreamError",
    "LlmTimeoutError",
    "close_clients",
    "get_engine",
    "run",
]

T = TypeVar("T")
_lock = threading.Lock()
_engines: dict[tuple, LlmEngine] = {}


def _config() -> tuple:
    if settings.LLM_ENGINE == "local":
        return (
            "local",
            settings.LOCAL_MODEL_PATH,
            settings.LOCAL_MAX_TOKENS,
            settings.LOCAL_CONTEXT_TOKENS,
            settings.LOCAL_THREADS,
            settings.LLM_TEMPERATURE,
        )
    return (
        "openai",
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.OPENAI_MODEL,
        settings.LLM_CONNECT_TIMEOUT,
        settings.LLM_FIRST_TOKEN_TIMEOUT,
        settings.LLM_TOTAL_TIMEOUT,
        settings.LLM_RETRIES,
        settings.LLM_RETRY_BACKOFF,
        settings.LLM_MAX_TOKENS,
        settings.LLM_TEMPERATURE,
        settings.LLM_HTTP_TRANSPORT,
    )


def get_engine() -> LlmEngine:
    """The engine the settings choose (`LLM_ENGINE`), built once per configuration."""
    key = _config()
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _build(key)
            _engines[key] = engine
        return engine


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` for commands: the model clients opened on its event loop are
    closed before the loop ends (an aiohttp session left open is reported as an "Unclosed
    client session" error when it is collected, after the command's own output)."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await close_clients()

    return asyncio.run(main())


async def close_clients() -> None:
    """Close the built engines' connections that belong to the running event loop (a test's
    loop before it closes; a server shutting down)."""
    with _lock:
        engines = list(_engines.values())
    for engine in engines:
        close = getattr(engine, "aclose", None)
        if close is not None:
            await close()


def _build(key: tuple) -> LlmEngine:
    if key[0] == "local":
        from .local_engine import LocalEngine

        _, path, max_tokens, n_ctx, threads, temperature = key
        return LocalEngine(
            model_path=path,
            max_tokens=max_tokens,
            context_tokens=n_ctx,
            threads=threads,
            default_temperature=temperature,
        )
    if key[0] != "openai":
        raise ValueError(f"Unknown LLM_ENGINE {key[0]!r}: use 'openai' or 'local'.")
    from .openai_engine import OpenAIEngine

    (_, api_key, base_url, model, connect, first, total, retries, backoff, tokens, temp, http) = key
    if http not in ("aiohttp", "httpx"):
        raise ValueError(f"Unknown LLM_HTTP_TRANSPORT {http!r}: use 'aiohttp' or 'httpx'.")
    return OpenAIEngine(
        api_key=api_key,
        base_url=base_url,
        model=model,
        connect_timeout=connect,
        first_token_timeout=first,
        total_timeout=total,
        retries=retries,
        backoff=backoff,
        default_max_tokens=tokens,
        default_temperature=temp,
        http_transport=http,
    )
