"""The benchmark's own instruments: the paced fake model (through the real `openai` client) and
the percentile arithmetic. Quick; the benchmark itself runs with ./scripts/bench, not here."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from openai import AsyncOpenAI

from bench.fake_llm import FakeLLM, Pace
from bench.stats import percentile, summary


async def test_fake_model_streams_the_reply_at_its_pace():
    fake = await FakeLLM(Pace(ttft=0.2, tps=100, sentences=2)).start()
    try:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")
        started = time.monotonic()
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        arrivals, text = [], []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
                text.append(chunk.choices[0].delta.content)
        await client.close()
    finally:
        await fake.stop()
    assert "".join(text) == Pace(sentences=2).reply()
    assert arrivals[0] >= 0.2  # Never sooner than the time to first token.
    # Paced from the request: the last token no sooner than ttft + (n-1)/tps.
    assert arrivals[-1] >= 0.2 + (len(arrivals) - 1) / 100


async def test_fake_model_control_changes_the_next_reply():
    fake = await FakeLLM(Pace(ttft=0, tps=1000)).start()
    try:
        request = urllib.request.Request(
            fake.base_url.removesuffix("/v1") + "/control",
            data=json.dumps({"text": "Only this."}).encode(),
            headers={"Content-Type": "application/json"},
        )
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")
        reply = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Hi"}]
        )
        await client.close()
    finally:
        await fake.stop()
    assert reply.choices[0].message.content == "Only this."
    assert fake.stats.requests == 1


def test_percentiles_interpolate_and_ignore_missing_values():
    assert percentile([10, 20, 30, 40, 50], 50) == 30
    assert percentile([10, 20], 90) == 19
    assert percentile([], 50) is None
    figures = summary([100, None, 300])
    assert figures["n"] == 2
    assert figures["p50"] == 200
    assert figures["max"] == 300
