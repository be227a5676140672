"""`./scripts/serve`, the README's first command: sets up, says where it serves, keeps the demo
secrets out of its output and the access log, and stops clearly when the port is taken."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

from realtime.access_log import redact
from tests.servers import ROOT, free_port


def serve_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
        },
        "VOZ_DATA_DIR": str(data_dir),
        "VOZ_ENV_FILE": str(data_dir / ".env"),
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }


def read_serve_env(data_dir: Path) -> dict[str, str]:
    lines = (data_dir / "serve.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def get(url: str, token: str) -> list:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def serve_once(data_dir: Path, port: int) -> tuple[str, list[str]]:
    """Run ./scripts/serve until the demo characters can be listed (also with `?token=`, which
    the access log must not keep); return its output (stdout and stderr: a log, not a terminal)."""
    log = data_dir / f"serve-{port}.log"
    process = subprocess.Popen(
        ["./scripts/serve"],
        cwd=ROOT,
        env=serve_env(data_dir, port),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if "Stop with Ctrl+C" in log.read_text(errors="replace"):
                token = read_serve_env(data_dir)["T"]
                try:
                    base = f"http://127.0.0.1:{port}"
                    items = get(f"{base}/api/characters", token)["items"]
                    get(f"{base}/api/characters?token={token}&limit=5", token)
                    time.sleep(0.5)  # the access line is written after the response
                    return log.read_text(errors="replace"), [item["name"] for item in items]
                except OSError:
                    pass
            if process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{log.read_text()}")
            time.sleep(0.5)
        raise AssertionError(f"serve did not answer in time:\n{log.read_text()}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_serve_sets_up_says_where_and_keeps_secrets_out_of_its_log(tmp_path):
    first_port, second_port = free_port(), free_port()
    output, names = serve_once(tmp_path, first_port)
    assert sorted(names) == ["Captain Nova", "Doña Rosa"]
    assert f"http://127.0.0.1:{first_port}/" in output
    assert f"ws://127.0.0.1:{first_port}/ws/voice/" in output
    assert "Stop with Ctrl+C" in output
    assert ".venv/bin/python manage.py" in output  # which Python the commands use
    assert "No such file or directory" not in output
    assert "SECRET_KEY=" in (tmp_path / ".env").read_text()

    # The secrets are in a file only the user can read, never in the output or access log.
    secrets = read_serve_env(tmp_path)
    assert stat.S_IMODE((tmp_path / "serve.env").stat().st_mode) == 0o600
    assert secrets["T"].startswith("voz_") and secrets["VOZ_PASSWORD"]
    assert secrets["VOZ_WS_URL"] == f"ws://127.0.0.1:{first_port}/ws/voice/"
    assert str(tmp_path / "serve.env") in output
    assert secrets["T"] not in output
    assert secrets["VOZ_PASSWORD"] not in output
    assert re.search(r'"GET /api/characters\?token=\[redacted\]&limit=5" 200', output), output

    # Idempotent: a second run reuses the database, the user and the token.
    again, names_again = serve_once(tmp_path, second_port)
    assert sorted(names_again) == sorted(names)
    assert read_serve_env(tmp_path)["T"] == secrets["T"]
    assert read_serve_env(tmp_path)["VOZ_URL"] == f"http://127.0.0.1:{second_port}"
    assert "Installing" not in again
    assert secrets["T"] not in again


def test_a_busy_port_is_one_clear_error_before_starting(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            ["./scripts/serve"],
            cwd=ROOT,
            env=serve_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in output
    assert f"PORT={port + 1} ./scripts/serve" in output
    assert "Voz is starting" not in output
    assert "CRITICAL" not in output and "Traceback" not in output


def test_first_install_reads_no_missing_stamp(tmp_path):
    """A first run has no .venv/.voz-installed yet: no 'No such file or directory' noise."""
    script = f"""
source scripts/_setup.sh
VENV={tmp_path} PY=true
install_project ""
cat {tmp_path}/.voz-installed
"""
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "No such file" not in result.stderr
    assert "Installing Voz" in result.stderr  # it did install, and stamped it
    assert len(result.stdout.split()[0]) == 16


def test_access_log_redaction():
    line = "GET /ws/voice/?token=voz_abc-DEF_123&x=1;password=hunter2 and voz_other"
    assert redact(line) == (
        "GET /ws/voice/?token=[redacted]&x=1;password=[redacted] and [redacted]"
    )
    assert redact("GET /api/characters?limit=5") == "GET /api/characters?limit=5"
