"""Compare offline reply models on fixed English and Spanish conversations. Prints figures.

    .venv/bin/python bench/bench_local_model.py [--model PATH ...] [--samples 2] [--show]

Each model plays two demo characters from characters/demo.py (`nova` in English, `rosa` in
Spanish) through the real prompt (`characters.prompt.build_prompt`) and the real local engine
(`LocalEngine`, llama.cpp), one conversation of four turns each, `--samples` times with fixed
seeds. Every reply is judged by the rules in bench/reply_rules.py. Timing: first token of the
first turn after a cache reset ("cold": the whole system prompt is evaluated) and of later turns
("warm": llama.cpp reuses the evaluated prefix, as in a running conversation), and tokens/s
after the first token. Without --model it compares the installed packaged models.
The machine's load average is printed: on a busy machine wall-clock figures are slower, so the
CPU time the process used is reported too ("cpu" columns: first-token CPU ms and tokens per
CPU second), which is what one free core would give with --threads 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from bench.reply_rules import RULES, Case, judge  # noqa: E402
from characters.demo import DEMO_CHARACTERS  # noqa: E402
from characters.prompt import Turn, build_prompt  # noqa: E402
from conversation.engines import ChatMessage  # noqa: E402
from conversation.engines.local_engine import LocalEngine, known_model_paths  # noqa: E402

NOVA = ("Nova", "Captain Nova", "Captain")
ROSA = ("Rosa", "Doña Rosa", "Abuela")
CONVERSATIONS: dict[str, list[Case]] = {
    "nova": [
        Case("nova", "en", "Hi! Who are you?", ("Nova",), NOVA),
        Case("nova", "en", "What is the name of your first officer?", ("Bolt",), NOVA),
        Case("nova", "en", "Why is the sky blue?", ("light", "scatter", "sun"), NOVA),
        Case("nova", "en", "I feel nervous about my exam tomorrow.", (), NOVA),
    ],
    "rosa": [
        Case("rosa", "es", "¡Hola! ¿Quién eres?", ("Rosa",), ROSA),
        Case("rosa", "es", "¿Cómo se llama tu nieta?", ("Lucía",), ROSA),
        Case("rosa", "es", "¿Cuál es tu plato favorito?", ("cocido",), ROSA),
        Case("rosa", "es", "Estoy un poco triste hoy.", (), ROSA),
    ],
}


@dataclass
class Figures:
    replies: list[tuple[Case, str, dict[str, bool]]] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu_cold_ms: list[float] = field(default_factory=list)
    cpu_warm_ms: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    load_s: float = 0.0


def character_spec(instance: str) -> tuple[dict, dict]:
    for spec in DEMO_CHARACTERS:
        for item in spec["instances"]:
            if item["name"] == instance:
                return spec["character"], item
    raise KeyError(instance)


def prompt_for(instance: str, history: list[Turn], text: str, context: int) -> list[ChatMessage]:
    character, item = character_spec(instance)
    prompt = build_prompt(
        description=character["description"],
        character_name=character["name"],
        instance_name=item["name"],
        language=character["language"],
        memory=item.get("memory", ""),
        summary="",
        history=history,
        user_text=text,
        context_tokens=context,
        reply_tokens=settings.LLM_MAX_TOKENS,
    )
    return [ChatMessage(m["role"], m["content"]) for m in prompt.messages]


@dataclass
class Reply:
    text: str
    first_ms: float  # Wall clock to the first token.
    rate: float  # Tokens/s after the first (wall clock).
    cpu_first_ms: float  # Process CPU time to the first token.
    cpu_rate: float  # Tokens per CPU second after the first.
    tokens: int
    cut: bool  # Ended by the token cap.


async def one_reply(engine: LocalEngine, messages: list[ChatMessage], temperature: float) -> Reply:
    stream = engine.stream(messages, temperature=temperature)
    started, cpu_started = time.perf_counter(), time.process_time()
    first = cpu_first = None
    async for _delta in stream:
        if first is None:
            first, cpu_first = time.perf_counter() - started, time.process_time() - cpu_started
    total, cpu_total = time.perf_counter() - started, time.process_time() - cpu_started
    first, cpu_first = first or total, cpu_first or cpu_total
    result = stream.result
    tokens = result.completion_tokens if result else 0
    more = max(tokens - 1, 0)
    return Reply(
        text=stream.text,
        first_ms=first * 1000,
        rate=more / max(total - first, 1e-9),
        cpu_first_ms=cpu_first * 1000,
        cpu_rate=more / max(cpu_total - cpu_first, 1e-9),
        tokens=tokens,
        cut=bool(result and result.finish_reason == "length"),
    )


async def run_model(path: Path, samples: int, temperature: float, threads: int) -> Figures:
    engine = LocalEngine(
        model_path=str(path),
        max_tokens=settings.LOCAL_MAX_TOKENS,
        context_tokens=settings.LOCAL_CONTEXT_TOKENS,
        threads=threads,
    )
    figures = Figures()
    started = time.perf_counter()
    llama = await asyncio.to_thread(engine.load)
    figures.load_s = time.perf_counter() - started
    for sample in range(samples):
        for instance, cases in CONVERSATIONS.items():
            llama.reset()  # Forget the evaluated prefix: the first turn is cold.
            llama.set_seed(1000 + sample)
            history: list[Turn] = []
            for index, case in enumerate(cases):
                messages = prompt_for(instance, history, case.text, engine.n_ctx)
                reply = await one_reply(engine, messages, temperature)
                (figures.cold_ms if index == 0 else figures.warm_ms).append(reply.first_ms)
                cpu = figures.cpu_cold_ms if index == 0 else figures.cpu_warm_ms
                cpu.append(reply.cpu_first_ms)
                if reply.tokens > 2:
                    figures.rates.append(reply.rate)
                    figures.cpu_rates.append(reply.cpu_rate)
                figures.tokens.append(reply.tokens)
                verdict = judge(reply.text, case, cut=reply.cut, source=messages[0].content)
                figures.replies.append((case, reply.text, verdict))
                history += [Turn("user", case.text), Turn("assistant", reply.text)]
    return figures


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(results: dict[str, Figures]) -> None:
    rules = list(RULES)
    header = ["model", "lang", "n", *rules, "all", "load s", "cold ms", "warm ms", "tok/s"]
    header += ["cpu cold ms", "cpu warm ms", "tok/cpu-s", "tokens"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, figures in results.items():
        for lang in ("en", "es"):
            rows = [(c, v) for c, _t, v in figures.replies if c.language == lang]
            passes = [sum(v[rule] for _c, v in rows) for rule in rules]
            good = sum(all(v.values()) for _c, v in rows)
            cells = [name, lang, str(len(rows)), *map(str, passes), f"{good}/{len(rows)}"]
            cells += [
                f"{figures.load_s:.1f}",
                f"{median(figures.cold_ms):.0f}",
                f"{median(figures.warm_ms):.0f}",
                f"{median(figures.rates):.1f}",
                f"{median(figures.cpu_cold_ms):.0f}",
                f"{median(figures.cpu_warm_ms):.0f}",
                f"{median(figures.cpu_rates):.1f}",
                f"{median([float(t) for t in figures.tokens]):.0f}",
            ]
            print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, help="GGUF file (repeatable)")
    parser.add_argument("--samples", type=int, default=2, help="runs of each conversation")
    parser.add_argument("--temperature", type=float, default=settings.LLM_TEMPERATURE)
    parser.add_argument("--threads", type=int, default=settings.LOCAL_THREADS)
    parser.add_argument("--show", action="store_true", help="print every reply and its verdict")
    args = parser.parse_args()

    paths = args.model or [p for p in known_model_paths() if p is not None]
    if not paths:
        sys.exit("No local model found: run ./scripts/serve once or pass --model PATH.")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"temperature {args.temperature}, max tokens {settings.LOCAL_MAX_TOKENS}, "
        f"{args.samples} samples x {sum(map(len, CONVERSATIONS.values()))} turns per model"
    )
    results: dict[str, Figures] = {}
    for path in paths:
        figures = asyncio.run(run_model(path, args.samples, args.temperature, args.threads))
        results[path.stem] = figures
        if args.show:
            for case, text, verdict in figures.replies:
                failed = ",".join(rule for rule, ok in verdict.items() if not ok) or "ok"
                print(f"[{path.stem} · {case.instance}] {case.text!r} -> {text!r} [{failed}]")
    print_table(results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
