"""The voice loop over a real daphne: per-turn latency and barge-in stop time. Prints figures.

    .venv/bin/python bench/bench_voice.py [--turns 5] [--tts piper,espeak]

Starts bench/fake_llm.py (tokens every 20 ms) and daphne with a seeded database,
then drives /ws/voice/ with a `websockets` client:
- typed turns: the server's `metrics` (first token, first sentence, first audio);
- barge-in: time from `response.cancel` to `response.done`, and audio frames after the cancel
  (the target is < 100 ms and none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets

from bench.procs import API_KEY, FakeModel, prepare_database, server_env, start_daphne

REPLY = "Aye, the stars are bright. We sail at dawn. Bring your coat, it gets cold up here."
LONG = " ".join(f"This is sentence number {n} of a long story." for n in range(40))


async def session(url: str, token: str):
    ws = await websockets.connect(f"{url}/ws/voice/?token={token}", max_size=2**24)
    await ws.send(json.dumps({"type": "session.start", "instance": "nova"}))
    assert json.loads(await ws.recv())["type"] == "session.started"
    return ws


async def typed_turn(ws) -> dict:
    await ws.send(json.dumps({"type": "input_text", "text": "Tell me about tonight."}))
    while True:
        frame = await ws.recv()
        if isinstance(frame, str) and (event := json.loads(frame))["type"] == "metrics":
            return event


async def barge_in(ws) -> tuple[float, int]:
    await ws.send(json.dumps({"type": "input_text", "text": "Tell me a long story."}))
    while not isinstance(await ws.recv(), bytes):  # Wait until audio is flowing.
        pass
    cancelled = time.perf_counter()
    await ws.send(json.dumps({"type": "response.cancel"}))
    late_audio = 0
    while True:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            late_audio += 1
            continue
        event = json.loads(frame)
        if event["type"] == "response.done":
            stop_ms = (time.perf_counter() - cancelled) * 1000
        if event["type"] == "metrics":
            return stop_ms, late_audio


def summary(name: str, values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return f"{name:>22}: n/a"
    return (
        f"{name:>22}: median {statistics.median(values):7.1f} ms   "
        f"min {min(values):7.1f}   max {max(values):7.1f}   (n={len(values)})"
    )


async def run(url: str, token: str, fake: FakeModel, turns: int) -> None:
    ws = await session(url, token)
    fake.control(text=REPLY, ttft=0, tps=50)
    metrics = [await typed_turn(ws) for _ in range(turns)]
    print("Typed turns (ms from the end of the user's input):")
    for name in ("llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms", "first_audio_ms"):
        print(summary(name, [m[name] for m in metrics]))
    fake.control(text=LONG)
    stops = [await barge_in(ws) for _ in range(turns)]
    print("Barge-in (response.cancel while audio plays):")
    print(summary("cancel → response.done", [s for s, _ in stops]))
    print(f"{'audio frames after':>22}: {sum(n for _, n in stops)} in {turns} cancels")
    await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--tts", default="piper,espeak", help="TTS_ENGINES for the server")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="voz-bench-"))
    fake = FakeModel(data, ttft=0, tps=50)
    env = server_env(
        data,
        LLM_ENGINE="openai",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=API_KEY,
        TTS_ENGINES=args.tts,
    )
    token = prepare_database(env)["token"]
    server = start_daphne(env)
    try:
        asyncio.run(run(f"ws://127.0.0.1:{server.port}", token, fake, args.turns))
    finally:
        server.stop()
        fake.stop()


if __name__ == "__main__":
    main()
