"""Concurrency: N voice sessions at once per STT engine, and typed sessions up to 1,000.

Voice sweep, for each recogniser that can serve English here: N sessions speak the English set at
real-time pace, starts spread over STAGGER_S; per N: first-audio p95, final-transcript p95, audio
the server dropped or failed to recognise (`stt_failed` errors), frames the client sent late, server CPU
seconds per session-second and RSS per session. N stays real-time when every turn is answered,
nothing is dropped and the final transcript's p95 is within REALTIME_SLACK_MS of one session's
median. The recogniser's own real-time factor with N decoders at once is measured alone too.

Text sweep: N typed sessions (no STT, no TTS) each send one `input_text`; the delay each token
gains on its way: first token over the model's own time to first token, and every later token
against the model's pace (arrival − first arrival − i/tps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import websockets

from . import procs, stats
from .floor import overhead, setup_django
from .profile import Recording, top
from .spoken import RATE
from .stack import Stack, measure, run_sessions

STAGGER_S = 2.0
REALTIME_SLACK_MS = 1000.0
CANDIDATE_ENGINES = ("vosk", "pocketsphinx", "whisper")


def english_engines() -> list[str]:
    """The STT engines that can serve English with what is installed (the server's settings)."""
    from audio_pipeline.stt import selection

    return [e for e in CANDIDATE_ENGINES if selection.why_not(e, "en") is None]


def recogniser_rtf(engine: str, turns, streams: int, audio_s: float = 6.0) -> dict:
    """Median per-stream real-time factor with `streams` recognisers decoding at once: wall
    time and the thread's own CPU time per audio second (the CPU one does not depend on what
    else the shared machine runs)."""
    from django.test import override_settings

    from audio_pipeline import stt

    pcm = b"".join(t.pcm() for t in turns)[: int(audio_s * RATE) * 2]
    step = int(0.02 * RATE) * 2
    factors: list[tuple[float, float]] = []
    seconds = len(pcm) / 2 / RATE

    def one() -> None:
        recognizer = stt.create_recognizer("en")
        started, cpu = time.perf_counter(), time.thread_time()
        for offset in range(0, len(pcm), step):
            recognizer.accept(pcm[offset : offset + step])
        factors.append(
            ((time.perf_counter() - started) / seconds, (time.thread_time() - cpu) / seconds)
        )

    with override_settings(STT_ENGINES=[engine], STT_ENGINES_BY_LANGUAGE={}):
        threads = [threading.Thread(target=one) for _ in range(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {
        "wall": round(statistics.median(f[0] for f in factors), 3),
        "cpu": round(statistics.median(f[1] for f in factors), 3),
    }


async def _staggered(url: str, token: str, plans, delay_s: float):
    async def later(index: int):
        await asyncio.sleep(random.uniform(0, delay_s) if index else 0)
        return await run_sessions(url, token, [plans[index]])

    groups = await asyncio.gather(*(later(i) for i in range(len(plans))))
    return [r for results, _ in groups for r in results], [c for _, cs in groups for c in cs]


def voice_sweep(
    stack: Stack,
    turns,
    counts: list[int],
    turns_per_session: int,
    floor: dict | None = None,
    engines: list[str] | None = None,
) -> dict:
    """Per engine (default: every one that serves English here) and N: the figures above; with
    `floor` (bench.floor), the overhead ratio. One session is always measured first: it is the
    reference of "real-time"."""
    counts = sorted({1, *counts})
    setup_django(stack._env())
    english = [t for t in turns if t.language == "en"]
    available = english_engines()
    engines = [e for e in engines if e in available] if engines else available
    out: dict = {"engines": {}, "largest_realtime": {}, "recogniser_rtf": {}}
    for engine in engines:
        stack.restart(STT_ENGINES=engine)
        points = []
        baseline = None
        for count in counts:
            plans = [
                ("nova", [english[(s + k) % len(english)] for k in range(turns_per_session)])
                for s in range(count)
            ]
            (results, clients), usage = measure(
                stack.stats, _staggered(stack.voice_url, stack.token, plans, STAGGER_S)
            )
            summary = stats.summarise_turns(results)
            final = summary["client"]["transcript_final"]
            baseline = baseline if baseline is not None else final["p50"]
            dropped = sum(e == "stt_failed" for r in results for e in r["errors"])
            ok = summary["ok"] == summary["turns"]
            realtime = bool(
                ok
                and not dropped
                and final["p95"] is not None
                and baseline is not None
                and final["p95"] <= baseline + REALTIME_SLACK_MS
            )
            points.append(
                {
                    "sessions": count,
                    "turns": summary["turns"],
                    "ok": summary["ok"],
                    "first_audio": summary["client"]["first_audio"],
                    "transcript_final": final,
                    "dropped_audio_errors": dropped,
                    "late_client_frames": sum(c.late_frames for c in clients),
                    "client_frames": sum(c.frames_sent for c in clients),
                    "server_cpu_s_per_session_s": round(
                        usage["server_cpu_s"] / max(usage["wall_s"] * count, 1e-9), 3
                    ),
                    # Sessions the machine's cores could carry at this CPU cost, load aside.
                    "capacity_estimate": round(
                        (os.cpu_count() or 1)
                        * usage["wall_s"]
                        * count
                        / max(usage["server_cpu_s"], 1e-9),
                        1,
                    ),
                    "rss_per_session_mib": round(
                        (usage["rss_peak_mib"] - usage["rss_before_mib"]) / count, 1
                    ),
                    "usage": usage,
                    "realtime": realtime,
                    "overhead": overhead(floor, results) if floor else None,
                }
            )
            print(
                f"  {engine} × {count}: first audio p95 {summary['client']['first_audio']['p95']}"
                f" ms, final p95 {final['p95']} ms, ok {summary['ok']}/{summary['turns']},"
                f" dropped {dropped}, realtime {realtime}, load {usage['load_average']}"
                f", overhead {(points[-1]['overhead'] or {}).get('ratio_median')}"
                f", capacity estimate {points[-1]['capacity_estimate']}"
            )
            for failed in summary["failed"][:2]:
                print(f"    failed {failed['turn']}: {failed['errors'][:3]}")
        out["engines"][engine] = points
        fine = [p["sessions"] for p in points if p["realtime"]]
        out["largest_realtime"][engine] = max(fine) if fine else 0
        out["recogniser_rtf"][engine] = {
            str(n): recogniser_rtf(engine, english, n) for n in counts if n <= 16
        }
    stack.restart()
    return out


class Gate:
    """Opens once `count` sessions have finished their handshake, well or not."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.connected: list[float] = []  # seconds each successful handshake took
        self._settled = 0
        self.open = asyncio.Event()

    def settled(self, took: float | None) -> None:
        if took is not None:
            self.connected.append(took)
        self._settled += 1
        if self._settled >= self.count:
            self.open.set()


async def _text_session(url: str, token: str, start_in: float, gate: Gate) -> dict:
    """One text-only session (`output_audio: none`): connect, wait until every session of the
    point is connected, then one turn `start_in` s later. Arrival times are kept per delta with
    the reply's non-space characters received so far, to meet the model's own send times."""
    marker = uuid.uuid4().hex[:12]
    began = time.monotonic()
    try:
        ws = await websockets.connect(
            url, subprotocols=["voz.v1", f"bearer.{token}"], open_timeout=120, max_size=2**24
        )
    except BaseException:
        gate.settled(None)
        raise
    async with ws:
        try:
            start = {"type": "session.start", "instance": "nova"}
            await ws.send(json.dumps({**start, "output_audio": {"format": "none"}}))
            while json.loads(await ws.recv()).get("type") != "session.started":
                pass
        except BaseException:
            gate.settled(None)
            raise
        gate.settled(time.monotonic() - began)
        await gate.open.wait()
        await asyncio.sleep(start_in)
        sent = time.monotonic()
        text = f"Tell me about tonight. [bench:{marker}]"
        await ws.send(json.dumps({"type": "input_text", "text": text}))
        arrivals: list[tuple[int, float]] = []
        received = 0
        async for frame in ws:
            if isinstance(frame, bytes):
                continue
            event = json.loads(frame)
            if event.get("type") == "response.text.delta":
                received += len(event["delta"].replace(" ", ""))
                arrivals.append((received, time.monotonic()))
            elif event.get("type") == "response.done":
                break
    return {"marker": marker, "sent": sent, "arrivals": arrivals}


def token_delays(arrivals: list, emissions: list) -> list[float]:
    """Per token, ms from the model sending it to the client receiving the delta that completes
    it (matched on non-space characters so far, which survive any regrouping of deltas)."""
    delays, position = [], 0
    for length, emitted in emissions:
        while position < len(arrivals) and arrivals[position][0] < length:
            position += 1
        if position == len(arrivals):
            break
        delays.append((arrivals[position][1] - emitted) * 1000)
    return delays


def _emissions(llm_url: str) -> dict:
    """The fake model's send times per marker ({} from a model that does not keep them)."""
    try:
        with urllib.request.urlopen(llm_url.removesuffix("/v1") + "/emissions", timeout=30) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


def text_sweep(
    stack: Stack,
    counts: list[int],
    tps: float,
    ttft: float,
    profile: Path | None = None,
    turn_rate: float = 100.0,
) -> dict:
    """Text-only sessions (`output_audio: none`, no recogniser); with `profile`, py-spy samples
    the server meanwhile."""
    stack.restart(STT_ENGINES="none")
    with Recording(stack.daphne.pid, profile, rate=100) if profile else contextlib.nullcontext():
        points = _text_points(stack, counts, tps, ttft, turn_rate)
    stack.restart()
    out = {"points": points, "turn_rate": turn_rate, "load_average": procs.load_average()}
    if profile:
        out["profile"] = top(profile)
    return out


def _text_points(
    stack: Stack, counts: list[int], tps: float, ttft: float, turn_rate: float
) -> list[dict]:
    """Per count: every session connects first; then each sends one turn at a random moment in
    `max(2, count / turn_rate)` s. Per-token delay is model send → client receipt (the fake model's
    `/emissions`); a model without them falls back to the pace (`tps`) after the first token."""
    points = []
    for count in counts:
        spread = max(2.0, count / turn_rate)

        async def run(count=count, spread=spread):
            gate = Gate(count)
            tasks = [
                _text_session(stack.voice_url, stack.token, random.uniform(0, spread), gate)
                for _ in range(count)
            ]
            return await asyncio.gather(*tasks, return_exceptions=True), gate.connected

        (sessions, connected), usage = measure(stack.stats, run())
        emissions = _emissions(stack.llm_url)
        good = [s for s in sessions if isinstance(s, dict) and s["arrivals"]]
        errors = sorted(
            {f"{type(s).__name__}: {s}"[:160] for s in sessions if isinstance(s, BaseException)}
        )
        delays: list[float] = []
        for session in good:
            sent = emissions.get(session["marker"])
            if sent:
                delays.extend(token_delays(session["arrivals"], sent))
            else:
                first = session["arrivals"][0][1]
                delays.extend(
                    (t - first - i / tps) * 1000
                    for i, (_, t) in enumerate(session["arrivals"])
                    if i
                )
        point = {
            "sessions": count,
            "turns_per_second": round(count / spread, 1),
            "answered": len(good),
            "failed": count - len(good),
            "errors": errors[:5],
            "connect_s": stats.summary(connected),
            "first_token_added": stats.summary(
                (s["arrivals"][0][1] - s["sent"] - ttft) * 1000 for s in good
            ),
            "added_delay_per_token": stats.summary(delays),
            "delay_measured_from": "model send times" if emissions else "pace",
            "rss_per_session_mib": round(
                (usage["rss_peak_mib"] - usage["rss_before_mib"]) / count, 2
            ),
            "usage": usage,
        }
        points.append(point)
        print(
            f"  text × {count}: answered {len(good)}, per-token added p95 "
            f"{point['added_delay_per_token']['p95']} ms ({point['delay_measured_from']}), "
            f"first token added p95 {point['first_token_added']['p95']} ms, "
            f"connect p95 {point['connect_s']['p95']} s, load {usage['load_average']}"
        )
        for error in errors[:3]:
            print(f"    {error}")
    return points
