"""The offline engine: llama-cpp-python with the best GGUF installed from a registry package."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from conversation.engines import ChatMessage, get_engine, local_models
from conversation.engines.local_engine import default_model_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or default_model_path() is None,
    reason="needs the local extra and a packaged model (./scripts/test installs both)",
)

MESSAGES = [
    ChatMessage("system", "You are a friendly pirate. Answer in one short sentence."),
    ChatMessage("user", "What do you love most?"),
]


@pytest.fixture
def local(settings):
    settings.LLM_ENGINE = "local"
    settings.LOCAL_MAX_TOKENS = 24
    settings.LOCAL_MODEL_PATH = ""
    return get_engine()


async def test_local_engine_streams_a_non_empty_reply(local):
    assert local.name == "local"
    stream = local.stream(MESSAGES, temperature=0.0)
    deltas = [delta async for delta in stream]
    assert len(deltas) >= 2
    assert "".join(deltas).strip()
    result = stream.result
    assert result.model == Path(local_models.default_model().name).stem
    assert result.finish_reason in {"stop", "length"}
    assert 1 <= result.completion_tokens <= 24
    assert result.first_token_ms is not None


async def test_local_engine_stops_when_the_stream_is_closed(local):
    stream = local.stream(MESSAGES, max_tokens=200)
    async for _ in stream:
        break
    await stream.aclose()
    assert stream.result is None
    # The model is free again at once: the worker stopped at its next token.
    again = local.stream(MESSAGES, temperature=0.0)
    text = await asyncio.wait_for(again.collect(), 30)
    assert text.strip()


def test_readiness_reports_the_local_model(local):
    from realtime import readiness

    details = readiness.collect()["llm"]
    assert details["engine"] == "local"
    assert details["model_found"] is True
    assert "api_key" not in str(details).replace("api_key_set", "")
