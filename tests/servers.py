"""Real server processes for tests: a seeded database and daphne on a free port."""

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a served process: its own data dir and .env, nothing leaked in."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return {
        **base,
        "VOZ_DATA_DIR": str(data_dir),
        "VOZ_ENV_FILE": str(data_dir / ".env"),
        "DJANGO_SETTINGS_MODULE": "realtime.settings",
        "TTS_ENGINES": "piper,espeak",  # edge-tts cannot be reached from here.
        "TTS_WORKERS": "1",  # One worker per native TTS engine: a test server starts sooner.
        **extra,
    }


def fake_model_env(data_dir: Path, model, **extra: str) -> dict[str, str]:
    """`server_env` with replies from `model` (a tests/fake_openai.py server) and no memory
    consolidation (it would send requests of its own), with `extra` settings on top."""
    from tests.fake_openai import API_KEY

    defaults = {
        "LLM_ENGINE": "openai",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": API_KEY,
        "MEMORY_CONSOLIDATION": "false",
    }
    return server_env(data_dir, **{**defaults, **extra})


def sqlite_file_env(data_dir: Path) -> dict[str, str]:
    """The environment of a subprocess on a migrated SQLite file in `data_dir`: the test
    database is in memory, and some checks need the project's real SQLite settings."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "VOZ_DATA_DIR": str(data_dir),
        "VOZ_ENV_FILE": str(data_dir / ".env"),
        "DJANGO_SETTINGS_MODULE": "realtime.settings",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return env


def prepare_database(env: dict[str, str]) -> dict:
    """Migrate and seed the demo data; returns the demo credentials."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [*manage, "seed_demo", "--json"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(seeded.stdout)


@dataclass
class Daphne:
    process: subprocess.Popen
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_daphne(
    env: dict[str, str],
    limit_s: float = 60,
    args: tuple[str, ...] = (),
    application: str = "realtime.asgi:application",
) -> Daphne:
    """daphne on a free port, as scripts/serve runs it (`realtime.server`: daphne with a bound on
    unsent bytes, with `args` such as `--workers 2`), serving `application`, once `/healthz`
    answers; its output goes to a log file (a pipe nobody reads would fill up and stall the
    server)."""
    port = free_port()
    log = Path(env["VOZ_DATA_DIR"]) / f"daphne-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime.server",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *args,
            application,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text(errors='replace')}")
        try:  # A connection alone is not enough: with workers the port is bound before them.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return Daphne(process, port, log)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("daphne did not start listening")
