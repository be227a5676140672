"""The openai engine against the fake OpenAI-compatible server (real `openai` client)."""

from __future__ import annotations

import asyncio

import pytest

from conversation.engines import (
    ChatMessage,
    LlmAuthError,
    LlmStreamError,
    LlmTimeoutError,
    get_engine,
)
from tests.fake_openai import API_KEY, Reply

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]


async def test_streams_deltas_in_order_with_usage(fake_openai):
    fake_openai.script("Ahoy there, matey!")
    stream = get_engine().stream(MESSAGES, model="gpt-4o-mini", temperature=0.2, max_tokens=50)
    deltas = [delta async for delta in stream]
    assert deltas == ["Ahoy", " there,", " matey!"]
    result = stream.result
    assert result.text == "Ahoy there, matey!"
    assert result.model == "gpt-4o-mini"
    assert result.finish_reason == "stop"
    assert result.completion_tokens == 3
    assert result.prompt_tokens == 3
    assert result.first_token_ms is not None and result.total_ms >= result.first_token_ms
    sent = fake_openai.chat_requests[-1]
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["stream"] is True
    assert sent.json["stream_options"] == {"include_usage": True}
    assert sent.json["max_tokens"] == 50 and sent.json["temperature"] == 0.2
    assert sent.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


async def test_500_before_first_token_is_retried(fake_openai):
    fake_openai.fail(500, times=2)
    fake_openai.script("Recovered.")
    text = await get_engine().stream(MESSAGES).collect()
    assert text == "Recovered."
    assert len(fake_openai.chat_requests) == 3


async def test_429_is_retried_but_insufficient_quota_is_not(fake_openai, settings):
    from conversation.engines import LlmQuotaError

    fake_openai.fail(429, times=1)
    assert await get_engine().stream(MESSAGES).collect() == "Hello from the fake model."
    fake_openai.reset()
    fake_openai.fail(429, times=1, code="insufficient_quota", message="No quota left.")
    with pytest.raises(LlmQuotaError):
        await get_engine().stream(MESSAGES).collect()
    assert len(fake_openai.chat_requests) == 1


async def test_401_is_a_clear_auth_error_without_retry(fake_openai):
    fake_openai.fail(401, times=3, message=f"Incorrect API key provided: {API_KEY}")
    with pytest.raises(LlmAuthError) as caught:
        await get_engine().stream(MESSAGES).collect()
    assert len(fake_openai.chat_requests) == 1
    assert caught.value.code == "llm_auth"
    assert API_KEY not in str(caught.value)


async def test_retries_give_up_after_the_limit(fake_openai, settings):
    from conversation.engines import LlmServerError

    settings.LLM_RETRIES = 1
    fake_openai.fail(503, times=5)
    with pytest.raises(LlmServerError):
        await get_engine().stream(MESSAGES).collect()
    assert len(fake_openai.chat_requests) == 2


async def test_cut_mid_stream_is_a_stream_error_and_not_retried(fake_openai):
    fake_openai.script(Reply("One two three four five", cut_after=2))
    stream = get_engine().stream(MESSAGES)
    with pytest.raises(LlmStreamError):
        async for _ in stream:
            pass
    assert stream.text == "One two"
    assert len(fake_openai.chat_requests) == 1


async def test_slow_first_token_times_out(fake_openai, settings):
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.3
    settings.LLM_RETRIES = 0
    fake_openai.script(Reply("Too late.", first_token_delay=2.0))
    started = asyncio.get_running_loop().time()
    with pytest.raises(LlmTimeoutError):
        await get_engine().stream(MESSAGES).collect()
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_closing_the_stream_stops_reading(fake_openai):
    fake_openai.script(Reply("a b c d e f g h", token_delay=0.1))
    stream = get_engine().stream(MESSAGES)
    received = []
    async for delta in stream:
        received.append(delta)
        if len(received) == 2:
            break
    await stream.aclose()
    assert stream.text == "a b"
    assert stream.result is None


async def test_connection_refused_is_a_connection_error(settings):
    from conversation.engines import LlmConnectionError

    settings.LLM_ENGINE = "openai"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "sk-nothing"
    settings.LLM_RETRIES = 1
    settings.LLM_RETRY_BACKOFF = 0.01
    with pytest.raises(LlmConnectionError):
        await get_engine().stream(MESSAGES).collect()


def test_readiness_shows_engine_and_model_but_no_key(fake_openai):
    from realtime import readiness

    details = readiness.collect()["llm"]
    assert details["engine"] == "openai"
    assert details["model"] == "gpt-3.5-turbo"
    assert details["api_key_set"] is True and details["base_url_set"] is True
    assert API_KEY not in str(details)


def test_default_engine_follows_the_environment(monkeypatch):
    import importlib

    import realtime.settings as voz_settings

    try:
        for name in ("LLM_ENGINE", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        assert importlib.reload(voz_settings).LLM_ENGINE == "local"
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
        assert importlib.reload(voz_settings).LLM_ENGINE == "openai"
        monkeypatch.setenv("LLM_ENGINE", "local")
        assert importlib.reload(voz_settings).LLM_ENGINE == "local"
    finally:
        monkeypatch.undo()
        importlib.reload(voz_settings)


def test_chunks_are_read_from_their_json_and_odd_parts_are_ignored():
    """Chunks arrive as the server's JSON (no typed object per token); a compatible server's
    odd parts (wrong types, missing fields) add nothing rather than failing the reply."""
    from conversation.engines.openai_engine import _State

    state = _State()
    chunk = {"model": "m1", "choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]}
    assert state.absorb(chunk) == "Hi" and state.model == "m1"
    assert state.absorb({"choices": [{"delta": {"content": " there"}}, "junk", None]}) == " there"
    assert state.absorb({"choices": [{"delta": {"content": 7}}, {"delta": None}]}) == ""
    assert state.absorb("not a chunk") == "" and state.absorb(None) == ""
    assert state.absorb({"choices": None, "model": 3}) == "" and state.model == "m1"
    state.absorb({"choices": [{"delta": {}, "finish_reason": "length"}]})
    state.absorb({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": "x"}})
    assert state.finish_reason == "length"
    assert (state.prompt_tokens, state.completion_tokens) == (12, None)


async def test_a_request_reads_no_kernel_randomness(fake_openai, monkeypatch):
    """uuid4 (the SDK's idempotency key) releases the GIL for getrandom: on a loaded event
    loop, the wait to take it back was 5 % of the loop. Requests use realtime.ids instead."""
    import threading
    import uuid

    calls = []
    real, loop_thread = uuid.uuid4, threading.get_ident()

    def counted():  # Calls on this (the event loop's) thread; the fake server has its own.
        if threading.get_ident() == loop_thread:
            calls.append(1)
        return real()

    monkeypatch.setattr(uuid, "uuid4", counted)
    fake_openai.script("Ahoy.")
    stream = get_engine().stream(MESSAGES, model="m", max_tokens=5)
    assert "".join([delta async for delta in stream]) == "Ahoy."
    assert calls == []


def test_hot_path_ids_are_unique_version_4_uuids():
    import uuid

    from realtime.ids import new_id

    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(uuid.UUID(hex=value).version == 4 for value in list(ids)[:100])
