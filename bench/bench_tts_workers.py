"""TTS in the server process vs in its worker processes (issue 21): first audio and CPU per
sentence, for Piper and libespeak-ng, on the same sentences, runs interleaved.

In-process is what the server did before: the engine in this process, each chunk taken on a
thread. Worker is what it does now: `WorkerPool` (audio_pipeline/tts/worker_pool.py). CPU is
this process's plus the workers' (from /proc), per sentence.

Run: .venv/bin/python bench/bench_tts_workers.py [rounds]   (prints figures; not a test)
"""

from __future__ import annotations

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

from audio_pipeline.tts.espeak import espeak_pool  # noqa: E402
from audio_pipeline.tts.espeak_library import EspeakLibrary  # noqa: E402
from audio_pipeline.tts.piper_engine import PiperSynthesiser, _model_paths, piper_pool  # noqa: E402
from audio_pipeline.tts.worker_pool import WorkerPool  # noqa: E402

SENTENCES = [
    "Hello there.",
    "The stars are bright tonight over the bridge.",
    "I would like a cup of coffee, please.",
    "Shall we fly to the moon and back before dinner?",
    "That is a very good question, and the answer is not simple at all.",
    "Aye, captain.",
    "The weather is nice today and I would like to go for a long walk by the sea.",
    "Tell me more about your journey.",
]
TICKS = os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds used so far by this process's children (the workers), from /proc."""
    total = 0.0
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return total


async def in_process(synthesiser, text: str, voice: str | None) -> float:
    started = time.perf_counter()
    chunks = iter(await asyncio.to_thread(lambda: iter(synthesiser.synthesize(text, voice))))
    first = await asyncio.to_thread(next, chunks, None)
    elapsed = time.perf_counter() - started
    while first is not None:
        first = await asyncio.to_thread(next, chunks, None)
    return elapsed


async def in_worker(pool: WorkerPool, text: str, voice: str | None) -> float:
    started = time.perf_counter()
    elapsed = None
    async for _ in pool.synthesize(text, voice):
        elapsed = elapsed or time.perf_counter() - started
    return elapsed


async def compare(name: str, synthesiser, pool: WorkerPool, voice: str | None, rounds: int):
    await asyncio.to_thread(synthesiser.load)
    await asyncio.to_thread(pool.start)
    firsts: dict[str, list[float]] = {"in-process": [], "worker": []}
    cpu = {"in-process": 0.0, "worker": 0.0}
    for _ in range(rounds):
        for text in SENTENCES:
            for how in ("in-process", "worker"):
                before = time.process_time() + children_cpu()
                if how == "in-process":
                    firsts[how].append(await in_process(synthesiser, text, voice))
                else:
                    firsts[how].append(await in_worker(pool, text, voice))
                cpu[how] += time.process_time() + children_cpu() - before
    count = rounds * len(SENTENCES)
    for how, values in firsts.items():
        values.sort()
        print(
            f"{name:7} {how:10}  first audio median {statistics.median(values) * 1000:6.1f} ms"
            f"  p90 {values[int(len(values) * 0.9)] * 1000:6.1f} ms"
            f"  CPU {cpu[how] / count * 1000:6.1f} ms/sentence  ({count} sentences)"
        )
    delta = statistics.median(firsts["worker"]) - statistics.median(firsts["in-process"])
    print(f"{name:7} worker - in-process: {delta * 1000:+.1f} ms first audio (median)")


async def main(rounds: int) -> None:
    model, config = _model_paths()
    await compare("piper", PiperSynthesiser(str(model), str(config)), piper_pool(), None, rounds)
    await compare("espeak", EspeakLibrary(), espeak_pool(), "en-us", rounds)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
