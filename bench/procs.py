"""Processes a benchmark starts and measures: the fake model, daphne with a seeded database.

Each runs in its own process (so the client's timing is not disturbed by it), on a free port,
with its output in a log file under the run's data directory. `ProcStats` reads CPU seconds and
resident memory from /proc (Linux), for CPU per turn and memory per session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-fake"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, log: Path, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"nothing listening on {port} after {limit_s} s")


@dataclass
class Proc:
    """A started process on `port`; `stop()` terminates it (and only it)."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(cmd: list[str], *, port: int, log: Path, env: dict[str, str] | None = None) -> Proc:
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    wait_listening(process, port, log)
    return Proc(process, port, log)


class FakeModel:
    """`bench.fake_llm` in its own process, paced by `control(ttft=…, tps=…, sentences=…)`."""

    def __init__(self, data_dir: Path, **pace: float) -> None:
        port = free_port()
        args = [f"--{k}={v}" for k, v in pace.items()]
        cmd = [sys.executable, "-m", "bench.fake_llm", "--port", str(port), *args]
        self.proc = start(cmd, port=port, log=data_dir / "fake-llm.log")
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def control(self, **pace: object) -> dict:
        request = urllib.request.Request(
            self.base_url.removesuffix("/v1") + "/control",
            data=json.dumps(pace).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.stop()


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A served process's environment: its own data dir and .env; nothing from the caller's."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return {
        **base,
        "VOZ_DATA_DIR": str(data_dir),
        "VOZ_ENV_FILE": str(data_dir / ".env"),
        "DJANGO_SETTINGS_MODULE": "realtime.settings",
        "TTS_ENGINES": "piper,espeak",  # edge-tts is online; the bench runs offline.
        "MEMORY_CONSOLIDATION": "false",
        # One demo user drives every session: no per-user turn or session limit (accounts/usage.py).
        "WS_TURNS_PER_MINUTE": "0",
        "WS_MAX_SESSIONS_PER_USER": "0",
        **extra,
    }


def prepare_database(env: dict[str, str]) -> dict:
    """Migrate and seed the demo data; returns the demo credentials (`token`, …)."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [*manage, "seed_demo", "--json"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return json.loads(seeded.stdout)


def start_daphne(env: dict[str, str]) -> Proc:
    """The server as scripts/serve runs it: `realtime.server` (daphne with the project's
    socket bounds and warm-up) where it exists, else plain daphne."""
    port = free_port()
    entry = "realtime.server" if (ROOT / "realtime" / "server.py").is_file() else "daphne"
    cmd = [sys.executable, "-m", entry, "-b", "127.0.0.1", "-p", str(port)]
    cmd.append("realtime.asgi:application")
    server = start(cmd, port=port, log=Path(env["VOZ_DATA_DIR"]) / f"daphne-{port}.log", env=env)
    # With WEB_WORKERS > 1 the port is bound before the workers listen: wait until one answers.
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)


def process_tree(pid: int) -> list[int]:
    """`pid` and every live process below it: web workers (`--workers`), TTS worker processes
    (audio_pipeline/tts/worker_pool.py), a peer's helpers. Their CPU and memory are the
    server's: since issue 21 Piper and libespeak-ng synthesise in worker processes."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for one in frontier for child in parents.get(one, [])]
        tree.extend(frontier)
    return tree


def stat_fields(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of `pid` in clock ticks (fields 14-17 of /proc/pid/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(v) for v in text[11:15]]


def rss_kib(pid: int) -> int:
    """Resident memory of one process, KiB (0 when it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(x.split()[1]) for x in lines if x.startswith("VmRSS:")), 0)


class ProcStats:
    """CPU seconds (user+system, reaped children included) and RSS of one process and every
    live process below it (`process_tree`), from /proc."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        total = 0
        for one in process_tree(self.pid):
            try:
                total += sum(stat_fields(one))
            except OSError:
                if one == self.pid:
                    return float("nan")
        return total / self.TICKS

    def rss_mib(self) -> float:
        if not Path(f"/proc/{self.pid}").exists():
            return float("nan")
        return sum(rss_kib(one) for one in process_tree(self.pid)) / 1024


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load (shared by several engineers: context for figures)."""
    return [round(v, 2) for v in os.getloadavg()]
