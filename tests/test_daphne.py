"""The real server: migrate, seed and serve with daphne, then talk to it over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {process.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("daphne did not start listening")


def get(url: str, token: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "VOZ_DATA_DIR": str(data),
        "VOZ_ENV_FILE": str(data / ".env"),
        "DJANGO_SETTINGS_MODULE": "realtime.settings",
    }
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
    credentials = json.loads(seeded.stdout)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "realtime.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}", credentials
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_served_api_lists_demo_characters(server):
    base, credentials = server
    status, body, _ = get(f"{base}/api/characters", credentials["token"])
    assert status == 200
    names = {item["name"] for item in json.loads(body)["items"]}
    assert names == {"Doña Rosa", "Captain Nova"}


def test_served_api_refuses_without_token(server):
    base, _ = server
    status, body, _ = get(f"{base}/api/characters")
    assert status == 401
    assert json.loads(body)["code"] == "unauthorized"


def test_served_probes_and_static_files(server):
    base, _ = server
    assert get(f"{base}/healthz")[0] == 200
    status, body, _ = get(f"{base}/readyz")
    assert status == 200
    assert json.loads(body)["checks"]["database"]["ok"] is True
    status, body, _ = get(f"{base}/static/frontend/voz.css")
    assert status == 200
    assert b"font-family" in body
    status, body, _ = get(f"{base}/accounts/login/")
    assert status == 200
    assert b"csrfmiddlewaretoken" in body
