"""One PNG per run: the per-turn marks (p50 bars, p90 whiskers), and, when measured, the naive
and peer comparisons and the concurrency sweep. matplotlib (the `bench` extra), headless."""

from __future__ import annotations

from pathlib import Path

from .stats import MARKS


def plot(report: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install -e '.[bench]'): no plot.")
        return None
    phases = report["phases"]
    panels = [name for name in ("latency", "compare", "sweep", "text") if _has(phases, name)]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for ax, name in zip(axes[:, 0], panels, strict=True):
        {"latency": _latency, "compare": _compare, "sweep": _sweep, "text": _text}[name](ax, phases)
    fig.suptitle(
        f"Voz bench {report['stamp']} · {report['commit']} · load {report['load_average_start']}"
        f" · model ttft {report['model']['ttft_s']} s, {report['model']['tps']} tok/s",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _has(phases: dict, name: str) -> bool:
    if name == "compare":
        return "naive" in phases or "peer" in phases
    return name in phases


def _bars(ax, labels, p50, p90, title):
    positions = range(len(labels))
    low = [0 if v is None else v for v in p50]
    err = [0 if (a is None or b is None) else max(b - a, 0) for a, b in zip(p50, p90, strict=True)]
    ax.bar(positions, low, yerr=err, capsize=4, color="#4a7fb5")
    ax.set_xticks(list(positions), labels, fontsize=8)
    ax.set_ylabel("ms after end of speech")
    ax.set_title(title, fontsize=10)
    for x, value in zip(positions, low, strict=True):
        ax.text(x, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7)


def _latency(ax, phases):
    client = phases["latency"]["english"]["client"]
    labels = [m for m in MARKS if client[m]["n"]]
    _bars(
        ax,
        labels,
        [client[m]["p50"] for m in labels],
        [client[m]["p90"] for m in labels],
        "English voice turns, one session (p50, whisker to p90)",
    )


def _compare(ax, phases):
    labels, p50, p90 = [], [], []
    for name, figures in _first_audio_rows(phases):
        labels.append(name)
        p50.append(figures.get("p50"))
        p90.append(figures.get("p90"))
    _bars(ax, labels, p50, p90, "First audio byte at the client (p50, whisker to p90)")


def _first_audio_rows(phases):
    if "naive" in phases:
        for system, summary in phases["naive"]["systems"].items():
            yield system, summary["client"]["first_audio"]
    if "peer" in phases:
        for system, summary in phases["peer"]["systems"].items():
            yield system, summary["client"]["first_audio"]


def _sweep(ax, phases):
    rows = phases["sweep"]["engines"]
    for engine, points in rows.items():
        xs = [p["sessions"] for p in points]
        ax.plot(xs, [p["first_audio"]["p95"] or 0 for p in points], marker="o", label=engine)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("simultaneous voice sessions")
    ax.set_ylabel("first audio p95 (ms)")
    ax.set_title("Concurrency sweep", fontsize=10)
    ax.legend(fontsize=8)


def _text(ax, phases):
    points = phases["text"]["points"]
    xs = [p["sessions"] for p in points]
    ax.plot(xs, [p["added_delay_per_token"]["p95"] or 0 for p in points], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("text sessions")
    ax.set_ylabel("p95 added delay per token (ms)")
    ax.set_title("Typed sessions: delay added to each token", fontsize=10)
