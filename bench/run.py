"""`./scripts/bench [--quick]`: the voice benchmark, end to end. Prints figures, writes
`bench/results/<stamp>-<label>.json` and a PNG plot beside it. Not a test: nothing is asserted.

Phases (`--phases`, comma-separated; default all):
- `latency`: the spoken set over /ws/voice/ to a real daphne, one session, real-time pace;
  per-turn marks from the end of speech, p50/p90/p99 (client) plus the server's own metrics.
- `floor`: each unavoidable part alone (endpoint delay, model time to the first chunk, synthesis of
  that chunk) and the overhead ratio; `naive`: the same turns through a whole-transcript →
  whole-reply → whole-audio server (bench/naive_server.py) and the first-audio ratio.
- `sweep`: 1…32 voice sessions at once; `text`: typed sessions up to 1,000 connections.
- `peer`: the same turns through a Pipecat bot (bench/peers/), interleaved with ours.

The model is bench/fake_llm.py (paced by --ttft/--tps/--sentences), or any OpenAI-compatible
server given with --llm-url. The machine's load average is recorded with every phase.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import phases as run_phases
from . import procs
from .profile import Recording, top
from .spoken import ensure_spoken_set
from .stack import Stack, dump

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PHASES = ("latency", "floor", "naive", "sweep", "text", "peer")


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def print_turn_summary(title: str, summary: dict, load: list[float]) -> None:
    print(f"\n== {title}: {summary['ok']}/{summary['turns']} turns ok · load {load} ==")
    for name, figures in [*summary["client"].items(), *summary["server"].items()]:
        if figures["n"]:
            print(
                f"  {name:>22}: p50 {figures['p50']:7.0f}  p90 {figures['p90']:7.0f}  "
                f"p99 {figures['p99']:7.0f} ms  (n={figures['n']})"
            )
    for failed in summary["failed"][:5]:
        print(f"  failed {failed['turn']}: {', '.join(failed['errors'][:3])}")


def print_profile(name: str, profile: dict) -> None:
    print(f"\n== Server profile, {name} (py-spy, {profile.get('samples', 0)} busy samples) ==")
    for kind in ("self", "total"):
        for name, share in profile.get(kind, [])[:12]:
            print(f"  {kind:>5} {share:5.1f} %  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (< 10 minutes)")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--label", default="", help="a name for this run's result files")
    parser.add_argument("--llm-url", help="an OpenAI-compatible server instead of the fake")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake model: first token (s)")
    parser.add_argument("--tps", type=float, default=50.0, help="fake model: tokens per second")
    parser.add_argument("--sentences", type=int, default=4, help="fake model: reply sentences")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server (latency and text phases)"
    )
    parser.add_argument("--repeats", type=int, help="passes over the English set (latency)")
    parser.add_argument(
        "--sweep-sessions", help="voice sessions at once for the sweep, e.g. 4,8 (default 1…32)"
    )
    parser.add_argument("--stt-engines", help="recognisers for the sweep, e.g. whisper")
    parser.add_argument(
        "--text-sessions", help="typed sessions for the text phase, e.g. 300 (default 10…1000)"
    )
    parser.add_argument(
        "--text-turn-rate",
        type=float,
        default=100.0,
        help="text phase: turns a second across all sessions (each sends one; default 100)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes on the port (realtime.server --workers; needs --redis)",
    )
    parser.add_argument(
        "--redis", help="Redis URL for the channel layer, e.g. redis://127.0.0.1:6379/0"
    )
    args = parser.parse_args(argv)
    if args.workers > 1 and not args.redis:
        parser.error("--workers > 1 needs --redis (the channel layer must reach every process)")
    server_settings = {"WEB_WORKERS": str(args.workers)}
    if args.redis:
        server_settings.update(REDIS_URL=args.redis, REDIS_PREFIX=f"vozbench{os.getpid()}")
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.repeats = args.repeats or (1 if args.quick else 3)

    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = args.label or git_commit()
    report: dict = {
        "stamp": stamp,
        "commit": git_commit(),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_average_start": procs.load_average(),
        "model": {
            "url": args.llm_url or "fake",
            "ttft_s": args.ttft,
            "tps": args.tps,
            "sentences": args.sentences,
        },
        "phases": {},
        "server": {"workers": args.workers, "layer": "redis" if args.redis else "in-memory"},
    }
    turns = ensure_spoken_set()
    data_dir = Path(tempfile.mkdtemp(prefix="voz-bench-", dir=ROOT / "var"))
    pace = {"ttft": args.ttft, "tps": args.tps, "sentences": args.sentences}
    with Stack(data_dir, llm_url=args.llm_url, base_settings=server_settings, **pace) as stack:
        for name in phases:
            phase = getattr(run_phases, f"phase_{name}")
            if args.profile and name == "latency":
                raw = data_dir / f"profile-{name}.txt"
                with Recording(stack.daphne.pid, raw):
                    result = phase(stack, turns, args, report)
                result["profile"] = top(raw)
            else:
                result = phase(stack, turns, args, report)
            report["phases"][name] = result
            run_phases.show(name, result, print_turn_summary)
            if "profile" in result:
                print_profile(name, result["profile"])
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["load_average_end"] = procs.load_average()
    out = RESULTS / f"{stamp}-{label}.json"
    dump(out, report)
    from .plot import plot

    png = plot(report, out.with_suffix(".png"))
    print(
        f"\nResults: {out.relative_to(ROOT)}  plot: {png.relative_to(ROOT) if png else 'none'}"
        f"  ({report['elapsed_s']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
