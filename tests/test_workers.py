"""`python -m realtime.server --workers N`: N server processes on one port (realtime/workers.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest
import websockets

from tests.fake_openai import FakeOpenAI, Reply
from tests.servers import (
    ROOT,
    fake_model_env,
    free_port,
    prepare_database,
    server_env,
    start_daphne,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "Two engines hum. Both of them answer."


def run_server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "realtime.server", *args, "realtime.asgi:application"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_several_workers_need_a_shared_channel_layer(tmp_path):
    done = run_server(server_env(tmp_path), "--workers", "2", "-p", str(free_port()))
    assert done.returncode == 2
    assert "REDIS_URL" in done.stderr and "in-memory" in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--workers", "0"), "1 or more"),
        (("--workers", "2", "-u", "/tmp/voz.sock"), "-b HOST -p PORT"),
        (("--workers", "2", "-b", "::1", "-p", "8000"), "IPv4"),
    ],
)
def test_worker_options_that_cannot_work_are_refused(tmp_path, args, says):
    done = run_server(server_env(tmp_path, REDIS_URL=REDIS_URL), *args)
    assert done.returncode == 2
    assert says in done.stderr


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def readyz_process(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
        return json.loads(answer.read())["details"]["process"]


def workers_answering(port: int, want: int, limit_s: float = 20) -> dict[int, int]:
    """worker number → pid, from `/readyz` asked until `want` workers answered (or the limit)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + limit_s
    while len(seen) < want and time.monotonic() < deadline:
        try:
            process = readyz_process(port)
        except OSError:
            time.sleep(0.1)
            continue
        seen[process["worker"]] = process["pid"]
    return seen


def burst_of_readyz(port: int, count: int) -> list[int]:
    """`count` connections opened at once, then a `/readyz` on each: the worker of each."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    for sock in sockets:
        sock.sendall(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    answered = []
    for sock in sockets:
        with sock, sock.makefile("rb") as reply:
            body = reply.read().split(b"\r\n\r\n", 1)[1]
            answered.append(json.loads(body)["details"]["process"]["worker"])
    return answered


async def typed_turn(url: str, token: str) -> dict:
    async with websockets.connect(
        f"{url}/ws/voice/", subprotocols=["voz.v1", f"bearer.{token}"]
    ) as ws:
        await ws.send(json.dumps({"type": "session.start", "instance": "nova"}))
        await ws.send(json.dumps({"type": "input_text", "text": "Are both engines running?"}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(frame, str) and (event := json.loads(frame))["type"] == "response.done":
                return event


@pytest.mark.redis
def test_workers_share_the_port_and_one_that_dies_is_started_again(tmp_path):
    model = FakeOpenAI().start()
    model.default_reply = Reply(REPLY)
    env = fake_model_env(
        tmp_path,
        model,
        REDIS_URL=REDIS_URL,
        REDIS_PREFIX=f"vozworkers{os.getpid()}",
        WS_MAX_SESSIONS_PER_USER="6",  # One user's six sessions at once, below.
    )
    token = prepare_database(env)["token"]
    server = start_daphne(env, args=("--workers", "2"))
    try:
        workers = workers_answering(server.port, 2)
        assert sorted(workers) == [1, 2], server.output()
        assert server.process.pid not in workers.values()  # the supervisor serves nothing

        # Sessions on either worker get their replies (each accept goes to one of them).
        async def turns() -> list[dict]:
            return await asyncio.gather(*(typed_turn(server.ws, token) for _ in range(6)))

        assert [event["text"] for event in asyncio.run(turns())] == [REPLY] * 6

        # Bursts of connections are spread evenly over the workers (one shared socket gave
        # splits from 1/49 to 12/38 of 50 here: the first worker awake takes most).
        counts = Counter(w for _ in range(3) for w in burst_of_readyz(server.port, 50))
        assert sorted(counts) == [1, 2] and min(counts.values()) >= 50, counts  # of 150

        os.kill(workers[1], signal.SIGKILL)
        again = {}
        deadline = time.monotonic() + 30
        # A request the kernel hands to the dead worker's socket waits in its backlog until
        # the new worker has started (warm-up included): ask until both have answered.
        while (again.get(1) in (None, workers[1]) or 2 not in again) and (
            time.monotonic() < deadline
        ):
            again.update(workers_answering(server.port, 2, limit_s=2))
        assert again.get(1) not in (None, workers[1]), server.output()
        assert again.get(2) == workers[2], again  # the other worker went on serving
        assert "Worker 1 (pid" in server.output()
    finally:
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=30)
        model.stop()
    assert status == 0
    assert not [pid for pid in workers.values() if running(pid)], "SIGTERM stops the workers"


@pytest.mark.redis
def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    env = server_env(tmp_path, REDIS_URL=REDIS_URL, REDIS_PREFIX=f"vozworkers{os.getpid()}")
    prepare_database(env)
    server = start_daphne(env, args=("--workers", "2"))
    try:
        workers = workers_answering(server.port, 2)
        assert sorted(workers) == [1, 2], server.output()
        server.process.kill()  # SIGKILL: the supervisor cannot forward anything.
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            alive = [pid for pid in workers.values() if running(pid)]
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, "orphaned workers would go on serving the port"
    finally:
        for pid in workers.values():
            if running(pid):
                os.kill(pid, signal.SIGKILL)
