"""`./scripts/serve`, the README's first command: sets up, prints how to use it, and serves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

from tests.servers import ROOT, free_port


def serve_once(data_dir, port: int) -> tuple[str, list[str]]:
    """Run ./scripts/serve until the demo characters can be listed; return its output."""
    env = {
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
    log = data_dir / f"serve-{port}.log"
    process = subprocess.Popen(
        ["./scripts/serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            output = log.read_text(errors="replace")
            token = re.search(r"API token: (voz_\S+)", output)
            if token:
                try:
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{port}/api/characters",
                        headers={"Authorization": f"Bearer {token.group(1)}"},
                    )
                    with urllib.request.urlopen(request, timeout=5) as response:
                        names = [item["name"] for item in json.loads(response.read())["items"]]
                    return output, names
                except OSError:
                    pass
            if process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{output}")
            time.sleep(0.5)
        raise AssertionError(f"serve did not answer in time:\n{log.read_text()}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_serve_sets_up_prints_credentials_and_serves_twice(tmp_path):
    first_port, second_port = free_port(), free_port()
    output, names = serve_once(tmp_path, first_port)
    assert sorted(names) == ["Captain Nova", "Doña Rosa"]
    assert f"http://127.0.0.1:{first_port}/" in output
    assert "Stop with Ctrl+C" in output
    assert re.search(r"password \S+", output)
    token = re.search(r"API token: (voz_\S+)", output).group(1)
    assert "SECRET_KEY=" in (tmp_path / ".env").read_text()
    # Idempotent: a second run reuses the database, the user and the token.
    again, names_again = serve_once(tmp_path, second_port)
    assert sorted(names_again) == sorted(names)
    assert token in again
    assert "Installing" not in again
