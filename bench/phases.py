"""The benchmark's phases: each takes the running stack, the spoken set, the options and the
report so far, and returns its figures (a dict for the JSON report)."""

from __future__ import annotations

import asyncio
import sys

from . import procs, stats
from .compare import System, first_audio_ratio, interleave
from .floor import measure_floor, overhead
from .stack import Stack, measure, run_sessions


def english(turns, repeats: int = 1):
    return [t for t in turns if t.language == "en"] * repeats


def phase_latency(stack: Stack, turns, args, report) -> dict:
    spanish = [t for t in turns if t.language == "es"]
    plans = [("nova", english(turns, args.repeats))]
    (results, clients), usage = measure(
        stack.stats, run_sessions(stack.voice_url, stack.token, plans)
    )
    (es_results, es_clients), _ = measure(
        stack.stats, run_sessions(stack.voice_url, stack.token, [("rosa", spanish)])
    )
    ok = sum(r["ok"] for r in results) or 1
    return {
        "stt_engine": {
            "en": clients[0].started.get("stt_engine"),
            "es": es_clients[0].started.get("stt_engine"),
        },
        "tts_engines": clients[0].started.get("tts_engines"),
        # 700 ms turn ends with "silence" here mean the Smart Turn model was missing.
        "turn_detector": stack.readiness().get("turn", {}),
        "english": stats.summarise_turns(results),
        "spanish": stats.summarise_turns(es_results),
        "usage": usage,
        "server_cpu_s_per_turn": round(usage["server_cpu_s"] / ok, 2),
        "late_client_frames": sum(c.late_frames for c in clients),
        "turns": results + es_results,
    }


def phase_floor(stack: Stack, turns, args, report) -> dict:
    floor = measure_floor(stack._env(), english(turns), stack.llm_url, procs.API_KEY)
    latency = report["phases"].get("latency")
    result = {"floor": floor, "load_average": procs.load_average()}
    if latency:
        en_turns = [t for t in latency["turns"] if t["language"] == "en"]
        result["overhead_1_session"] = overhead(floor, en_turns)
    return result


def phase_naive(stack: Stack, turns, args, report) -> dict:
    port = procs.free_port()
    naive = procs.start(
        [sys.executable, "-m", "bench.naive_server", "--port", str(port)],
        port=port,
        log=stack.data_dir / "naive.log",
        env=stack._env(),
    )
    try:
        systems = [
            System("voz", stack.voice_url, stack.token, stack.daphne.pid),
            System("naive", f"ws://127.0.0.1:{port}/", "", naive.pid),
        ]
        chosen = english(turns)[:3] if args.quick else english(turns)
        out = asyncio.run(interleave(systems, chosen, "nova"))
    finally:
        naive.stop()
    out["first_audio_ratio_naive_over_voz"] = first_audio_ratio(out, "naive", "voz")
    out["sentences_per_reply"] = args.sentences
    return out


def show(name: str, result: dict, print_turn_summary) -> None:
    if name == "latency":
        load = result["usage"]["load_average"]
        print_turn_summary(
            "Voice turns, English (ms from the end of speech)", result["english"], load
        )
        print_turn_summary("Voice turns, Spanish", result["spanish"], load)
        print(
            f"  server CPU per turn {result['server_cpu_s_per_turn']} s, "
            f"RSS peak {result['usage']['rss_peak_mib']} MiB, stt {result['stt_engine']}, "
            f"end of turn {result['turn_detector'].get('detector')}"
        )
    elif name == "floor":
        print(f"\n== Floor (each part alone) · load {result['load_average']} ==")
        for key, value in (result.get("overhead_1_session") or {}).items():
            print(f"  {key:>26}: {value}")
    elif name == "sweep":
        print(f"\n== Concurrency: largest real-time count {result['largest_realtime']} ==")
        print(f"  recogniser RTF with N at once: {result['recogniser_rtf']}")
    elif name in ("naive", "peer"):
        for system, summary in result["systems"].items():
            print_turn_summary(f"{name}: {system}", summary, result["load_average"])
            print(
                f"  CPU per turn {summary['cpu_s_per_turn']} s, RSS peak {summary['rss_peak_mib']} MiB"
            )
        for key in [k for k in result if "ratio" in k]:
            print(f"  {key}: {result[key]}")


def phase_sweep(stack: Stack, turns, args, report) -> dict:
    from .sweep import voice_sweep

    counts = [1, 2, 4] if args.quick else [1, 2, 4, 8, 16, 32]
    if args.sweep_sessions:
        counts = [int(n) for n in args.sweep_sessions.split(",")]
    engines = args.stt_engines.split(",") if args.stt_engines else None
    floor = report["phases"].get("floor", {}).get("floor")
    return voice_sweep(
        stack,
        turns,
        counts,
        turns_per_session=1 if args.quick else 3,
        floor=floor,
        engines=engines,
    )


def phase_text(stack: Stack, turns, args, report) -> dict:
    from .sweep import text_sweep

    counts = [10, 100] if args.quick else [10, 100, 300, 1000]
    if args.text_sessions:
        counts = [int(n) for n in args.text_sessions.split(",")]
    profile = stack.data_dir / "profile-text.txt" if args.profile else None
    return text_sweep(stack, counts, args.tps, args.ttft, profile, args.text_turn_rate)


def phase_peer(stack: Stack, turns, args, report) -> dict:
    from .peer import run_peer

    return run_peer(stack, english(turns)[: 3 if args.quick else 8])
