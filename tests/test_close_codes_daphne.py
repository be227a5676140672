"""Every close path reaches a real client over a real daphne, with the code docs/protocol.md
documents, within a bound (issue 21 item 5). daphne's autobahn refuses to send 1011 and 1013:
those closes used to raise inside daphne and leave the socket open for ever.

Covered elsewhere over daphne: 1009 (tests/test_edge_daphne.py), 4429 from the server's bound
on unsent bytes (tests/test_load_slow_reader.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import pytest
import websockets

from tests.servers import ROOT, prepare_database, server_env, start_daphne

BOUND_S = 5.0  # A close comes within this of what causes it (idle and expiry: of their limit).
IDLE_S = 3.0
SESSION_S = 7.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    env = server_env(
        tmp_path_factory.mktemp("closes"),
        WARM_UP="false",
        WS_IDLE_TIMEOUT_SECONDS=str(IDLE_S),
        WS_MAX_SESSION_SECONDS=str(SESSION_S),
        WS_AUTH_RECHECK_SECONDS="0.5",
    )
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"], env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """The real edge in front of a consumer that fails on request (tests/faulty_asgi.py)."""
    env = server_env(tmp_path_factory.mktemp("faulty"), WARM_UP="false")
    prepare_database(env)
    server = start_daphne(env, application="tests.faulty_asgi:application")
    try:
        yield server
    finally:
        server.stop()


async def closing(ws, limit_s: float = BOUND_S) -> tuple[list, int | None, float]:
    """Every event until the server's close frame: (events, close code, seconds it took)."""
    started, events = time.monotonic(), []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            frame = await asyncio.wait_for(ws.recv(), limit_s)
            events.append(json.loads(frame) if isinstance(frame, str) else frame)
    received = closed.value.rcvd
    return events, None if received is None else received.code, time.monotonic() - started


async def refused(url: str, **connect) -> tuple[dict, int | None]:
    async with websockets.connect(url, **connect) as ws:
        events, code, _ = await closing(ws)
    assert len(events) == 1 and events[0]["type"] == "error" and events[0]["fatal"], events
    return events[0], code


async def started(ws, instance: str = "nova") -> None:
    await ws.send(
        json.dumps(
            {"type": "session.start", "instance": instance, "output_audio": {"format": "none"}}
        )
    )
    while (event := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] != "session.started":
        assert event["type"] != "error", event


# Refused handshakes -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/voice", "/ws/nope/", "/ws/observe/", "/"])
async def test_a_path_that_is_no_endpoint_is_not_found_not_retry(served, path):
    server, token, _ = served
    event, code = await refused(f"{server.ws}{path}?token={token}")
    assert (code, event["code"]) == (4404, "not_found")
    assert "/ws/voice/" in event["message"]  # It names the endpoints.


async def test_a_bad_token_is_4401(served):
    server, _, _ = served
    event, code = await refused(f"{server.ws}/ws/voice/?token=voz_wrong")
    assert (code, event["code"]) == (4401, "unauthorized")


async def test_a_foreign_origin_is_4403(served):
    server, token, _ = served
    event, code = await refused(
        f"{server.ws}/ws/voice/?token={token}", origin="http://evil.example"
    )
    assert (code, event["code"]) == (4403, "forbidden_origin")


async def test_observing_an_unknown_instance_is_4404(served):
    server, token, _ = served
    event, code = await refused(f"{server.ws}/ws/observe/nobody/?token={token}")
    assert (code, event["code"]) == (4404, "not_found")


async def test_a_handshake_the_database_cannot_check_is_4503_unavailable(tmp_path):
    env = server_env(
        tmp_path, WARM_UP="false", DATABASE_URL="postgres://voz@127.0.0.1:9/unreachable"
    )
    server = start_daphne(env)
    try:
        event, code = await refused(f"{server.ws}/ws/voice/?token=voz_any")
    finally:
        server.stop()
    assert (code, event["code"]) == (4503, "unavailable")


# Closes of a live socket --------------------------------------------------------------------


async def test_session_end_is_1000(served):
    server, token, _ = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await started(ws)
        await ws.send(json.dumps({"type": "session.end"}))
        events, code, _ = await closing(ws)
    assert events[-1]["type"] == "session.ended"
    assert code == 1000


async def test_an_idle_session_is_4408(served):
    server, token, _ = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await started(ws)
        events, code, took = await closing(ws, IDLE_S + BOUND_S)
    assert (events[-1]["code"], events[-1]["fatal"], code) == ("idle_timeout", True, 4408)
    assert took < IDLE_S + 2


async def test_a_session_past_its_time_is_4408(served):
    server, token, _ = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await started(ws)
        opened = time.monotonic()

        async def keep_talking() -> None:
            while True:
                await ws.send(json.dumps({"type": "ping"}))
                await asyncio.sleep(0.5)

        talking = asyncio.create_task(keep_talking())
        try:
            events, code, _ = await closing(ws, SESSION_S + BOUND_S)
        finally:
            talking.cancel()
    assert (events[-1]["code"], code) == ("session_expired", 4408)
    assert time.monotonic() - opened < SESSION_S + 2


REVOKE = (
    "from accounts.models import ApiToken; from accounts.services import token_revoke; "
    "[token_revoke(token=t) for t in ApiToken.objects.filter(user__username='revokee')]"
)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


async def test_a_revoked_token_closes_open_sockets_with_4401(served):
    server, _, env = served
    token = await asyncio.to_thread(manage, env, "create_token", "revokee", "--create-user")
    async with websockets.connect(f"{server.ws}/ws/ping/?token={token}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        await asyncio.to_thread(manage, env, "shell", "-c", REVOKE)
        events, code, _ = await closing(ws)
    assert (events[-1]["code"], code) == ("unauthorized", 4401)


async def test_deleting_the_instance_closes_its_session_with_4404(served):
    server, token, _ = served

    def api(method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{server.http}/api{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    nova = await asyncio.to_thread(api, "GET", "/instances/by-name/nova")
    copy = await asyncio.to_thread(
        api, "POST", "/instances", {"name": "doomed", "character_id": nova["character_id"]}
    )
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await started(ws, "doomed")
        await asyncio.to_thread(api, "DELETE", f"/instances/{copy['id']}")
        events, code, took = await closing(ws)
    assert (events[-1]["code"], events[-1]["fatal"], code) == ("instance_not_found", True, 4404)
    assert took < 2, "a deletion in this process closes its sessions at once"


# A consumer that fails, through the edge ----------------------------------------------------


async def test_a_consumer_that_fails_is_internal_error_4500(faulty):
    async with websockets.connect(f"{faulty.ws}/ws/any/") as ws:
        await ws.send("raise")
        events, code, _ = await closing(ws)
    assert (events[-1]["code"], events[-1]["fatal"], code) == ("internal_error", True, 4500)


@pytest.mark.parametrize(
    ("asked", "sent"), [(1011, 4500), (1013, 4503), (1001, 1000), (4408, 4408), (1000, 1000)]
)
async def test_codes_daphne_cannot_send_are_sent_as_ours(faulty, asked, sent):
    async with websockets.connect(f"{faulty.ws}/ws/any/") as ws:
        await ws.send(str(asked))
        _, code, _ = await closing(ws)
    assert code == sent


async def test_the_reference_client_stops_at_a_wrong_path(served, tmp_path):
    server, token, _ = served
    started_at = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.voice_client",
        "--url",
        f"{server.ws}/ws/voice",
        "--token",
        token,
        "--instance",
        "nova",
        "--text",
        "hi",
        "--out",
        str(tmp_path),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "not found (close code 4404)" in err.decode() and "retrying" not in err.decode()
    assert time.monotonic() - started_at < 30
