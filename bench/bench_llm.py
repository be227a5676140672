"""Time to first token and tokens/s of the reply engines. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_llm.py [--runs 5] [--max-tokens 120] [--skip-local] [--skip-fake]

`local`: llama.cpp with the SmolLM2 GGUF (load time reported apart). `fake`: the openai engine
(real `openai` client) against bench/fake_llm.py with no delays, which measures our overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from conversation.engines import ChatMessage, get_engine  # noqa: E402

MESSAGES = [
    ChatMessage("system", "You are Luna, a cheerful pirate. Answer in short spoken sentences."),
    ChatMessage("user", "Tell me about the best day you ever had at sea."),
]


async def measure(runs: int, max_tokens: int) -> list[tuple[float, float, int]]:
    figures = []
    engine = get_engine()
    for _ in range(runs):
        stream = engine.stream(MESSAGES, temperature=0.7, max_tokens=max_tokens)
        started = time.perf_counter()
        first = None
        count = 0
        async for _delta in stream:
            count += 1
            if first is None:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        tokens = stream.result.completion_tokens or count
        after_first = max(total - (first or 0), 1e-9)
        figures.append(
            ((first or 0) * 1000, (tokens - 1) / after_first if tokens > 1 else 0, tokens)
        )
    return figures


def report(name: str, figures: list[tuple[float, float, int]]) -> None:
    ttft = [f[0] for f in figures]
    rate = [f[1] for f in figures]
    tokens = [f[2] for f in figures]
    print(
        f"{name:>6}: first token median {statistics.median(ttft):7.1f} ms "
        f"(min {min(ttft):.1f}, max {max(ttft):.1f}) · "
        f"{statistics.median(rate):6.1f} tokens/s · {statistics.median(tokens):.0f} tokens/reply "
        f"· {len(figures)} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-fake", action="store_true")
    args = parser.parse_args()

    if not args.skip_local:
        settings.LLM_ENGINE = "local"
        settings.LOCAL_MAX_TOKENS = args.max_tokens
        engine = get_engine()
        started = time.perf_counter()
        engine.load()
        print(f" local: {engine.default_model()} loaded in {time.perf_counter() - started:.2f} s")
        report("local", asyncio.run(measure(args.runs, args.max_tokens)))

    if not args.skip_fake:
        import tempfile

        from bench.procs import API_KEY, FakeModel

        server = FakeModel(Path(tempfile.mkdtemp(prefix="voz-bench-")), ttft=0, tps=100000)
        server.control(text=" ".join(f"word{i}" for i in range(args.max_tokens)))
        settings.LLM_ENGINE = "openai"
        settings.OPENAI_BASE_URL = server.base_url
        settings.OPENAI_API_KEY = API_KEY
        try:
            report("fake", asyncio.run(measure(args.runs, args.max_tokens)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
