"""The floor: the parts of first audio that no pipeline can avoid, each measured alone.

- endpoint delay: the server's own recogniser (same settings) fed a turn's audio plus silence in
  20 ms frames; the delay is the audio between the end of speech and the frame after which the
  final came, plus the time that frame took to process (audio arrives at real-time pace, so audio
  seconds are wall seconds);
- model time to the first chunk: the raw `openai` client against the same model, until the
  pipeline's own splitter (voice.engines.sentence_splitter) yields its first chunk;
- synthesis time of that chunk: the same TTS chain and output encoding the server uses.

Overhead = measured first audio ÷ (endpoint + model + synthesis). Runs in the bench process with
the server's settings (Django is set up here with the same environment).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from .spoken import RATE, Turn

FRAME_S = 0.02
TAIL_S = 3.0


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def endpoint_delay(turn: Turn) -> dict:
    """Seconds from the end of speech to the final transcript, for this turn, recogniser alone."""
    from audio_pipeline import stt

    recognizer = stt.create_recognizer(turn.language)
    pcm = turn.pcm() + b"\0" * int(TAIL_S * RATE) * 2
    step = int(FRAME_S * RATE) * 2
    for offset in range(0, len(pcm), step):
        started = time.perf_counter()
        results = recognizer.accept(pcm[offset : offset + step])
        spent = time.perf_counter() - started
        if any(r.final and r.text.strip() for r in results):
            position = (offset + step) / 2 / RATE
            return {
                "engine": recognizer.engine,
                "delay_s": round(max(position - turn.speech_end_s, 0) + spent, 3),
                "text": " ".join(r.text for r in results if r.final),
            }
    started = time.perf_counter()
    final = recognizer.finish()  # No endpoint in the tail: a commit would end it.
    return {
        "engine": recognizer.engine,
        "delay_s": round(TAIL_S + time.perf_counter() - started, 3),
        "text": final.text,
        "no_endpoint": True,
    }


async def model_first_chunk(base_url: str, api_key: str, runs: int) -> dict:
    """Seconds to the first chunk the splitter yields, and that chunk, raw client, `runs` times."""
    from openai import AsyncOpenAI

    from voice.engines import sentence_splitter  # The splitter the pipeline uses.

    client = AsyncOpenAI(base_url=base_url, api_key=api_key)
    times, chunk = [], ""
    for _ in range(runs):
        splitter = sentence_splitter()
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Hello."}], stream=True
        )
        first = None
        async for event in stream:
            delta = event.choices[0].delta.content if event.choices else None
            if delta and first is None and (done := splitter.feed(delta)):
                first = time.perf_counter() - started
                chunk = done[0]
        if first is None:
            first = time.perf_counter() - started
            chunk = "".join(splitter.flush())
        times.append(first)
    await client.close()
    return {"median_s": round(statistics.median(times), 3), "chunk": chunk, "runs": runs}


async def synthesis(text: str, language: str, voices: dict[str, str], runs: int) -> dict:
    """Seconds to synthesise `text` whole and encode it as the server does (warm engines)."""
    from audio_pipeline import formats, tts

    async def once() -> tuple[float, str]:
        started = time.perf_counter()
        stream = await tts.synthesize_with_fallback(text, language=language, voices=voices)
        chunks = [chunk async for chunk in stream]
        data = b"".join(c.data for c in chunks)
        await asyncio.to_thread(
            formats.convert, data, chunks[0].format, chunks[0].sample_rate, "wav"
        )
        return time.perf_counter() - started, stream.engine

    await once()  # Load the voice: the server has it loaded after its first turn too.
    results = [await once() for _ in range(runs)]
    return {
        "median_s": round(statistics.median(t for t, _ in results), 3),
        "engine": results[0][1],
        "runs": runs,
    }


def measure_floor(env: dict[str, str], turns: list[Turn], base_url: str, api_key: str) -> dict:
    """Every part alone, per turn (endpoint) and per reply (model, synthesis)."""
    setup_django(env)
    from characters.demo import DEMO_CHARACTERS

    voices = next(
        c["character"]["voices"] for c in DEMO_CHARACTERS if c["character"]["language"] == "en"
    )
    endpoints = {turn.id: endpoint_delay(turn) for turn in turns}
    model = asyncio.run(model_first_chunk(base_url, api_key, runs=5))
    speech = asyncio.run(synthesis(model["chunk"], "en", voices, runs=5))
    return {"endpoint": endpoints, "model_first_chunk": model, "synthesis_first_chunk": speech}


def overhead(floor: dict, turn_results: list[dict]) -> dict:
    """Per turn: first audio ÷ (its endpoint delay + model + synthesis); medians of both."""
    fixed = floor["model_first_chunk"]["median_s"] + floor["synthesis_first_chunk"]["median_s"]
    rows = []
    for result in turn_results:
        first = result["marks"].get("first_audio") if result["ok"] else None
        endpoint = floor["endpoint"].get(result["turn"], {}).get("delay_s")
        if first is None or endpoint is None:
            continue
        floor_ms = (endpoint + fixed) * 1000
        rows.append((first, floor_ms, first / floor_ms))
    if not rows:
        return {"n": 0}
    return {
        "n": len(rows),
        "first_audio_median_ms": round(statistics.median(r[0] for r in rows), 1),
        "floor_median_ms": round(statistics.median(r[1] for r in rows), 1),
        "ratio_median": round(statistics.median(r[2] for r in rows), 2),
        "ratio_of_medians": round(
            statistics.median(r[0] for r in rows) / statistics.median(r[1] for r in rows), 2
        ),
        "endpoint_median_ms": round(
            statistics.median(floor["endpoint"][k]["delay_s"] for k in floor["endpoint"]) * 1000,
            1,
        ),
        "model_first_chunk_ms": round(floor["model_first_chunk"]["median_s"] * 1000, 1),
        "synthesis_first_chunk_ms": round(floor["synthesis_first_chunk"]["median_s"] * 1000, 1),
    }
