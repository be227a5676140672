"""Several systems over the same spoken turns, interleaved turn by turn in one run.

Each system gets one session (open for the whole run); turn i goes to every system before turn
i+1 goes to any, so a change in the machine's load touches all of them alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from . import procs, stats
from .speaker import VoiceClient
from .spoken import Turn


@dataclass
class System:
    name: str
    url: str
    token: str = ""
    pid: int | None = None  # the server process, for CPU seconds and memory


async def interleave(
    systems: list[System], turns: list[Turn], instance: str, timeout_s: float = 30.0
) -> dict:
    """Per system: the turn summary, CPU seconds per turn and peak RSS of its server process.

    `timeout_s`: how long a turn may take to finish (a peer that plays its audio out at
    real-time pace needs the reply's length and more)."""
    clients = {
        s.name: VoiceClient(s.url, s.token, system=s.name, timeout_s=timeout_s) for s in systems
    }
    usage = {s.name: {"cpu_s": 0.0, "rss_peak_mib": 0.0} for s in systems}
    results: dict[str, list[dict]] = {s.name: [] for s in systems}
    for system in systems:
        await clients[system.name].open(instance)
    try:
        for turn in turns:
            for system in systems:
                meter = procs.ProcStats(system.pid) if system.pid else None
                cpu0 = meter.cpu_seconds() if meter else 0.0
                result = await clients[system.name].turn(turn)
                results[system.name].append(asdict(result))
                if meter:
                    usage[system.name]["cpu_s"] += meter.cpu_seconds() - cpu0
                    usage[system.name]["rss_peak_mib"] = max(
                        usage[system.name]["rss_peak_mib"], meter.rss_mib()
                    )
    finally:
        for client in clients.values():
            await client.close()
    out = {"systems": {}, "load_average": procs.load_average(), "at": time.time()}
    for system in systems:
        rows = results[system.name]
        ok = sum(r["ok"] for r in rows) or 1
        out["systems"][system.name] = {
            **stats.summarise_turns(rows),
            "stt_engine": clients[system.name].started.get("stt_engine"),
            "cpu_s_per_turn": round(usage[system.name]["cpu_s"] / ok, 3),
            "rss_peak_mib": round(usage[system.name]["rss_peak_mib"], 1),
            "turn_results": rows,
        }
    return out


def first_audio_ratio(out: dict, a: str, b: str, key: str = "p50") -> float | None:
    """System a's first-audio percentile ÷ system b's."""
    first = out["systems"][a]["client"]["first_audio"][key]
    second = out["systems"][b]["client"]["first_audio"][key]
    return stats.ratio(first, second)
