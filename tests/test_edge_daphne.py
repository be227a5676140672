"""The WebSocket edge over a real daphne and a real client (issue 14 items 3, 11, 18)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.fake_openai import FakeOpenAI, Reply
from tests.servers import fake_model_env, prepare_database, start_daphne

LONG_REPLY = " ".join(f"Sentence number {n} of a long reply." for n in range(40))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    llm = FakeOpenAI().start()
    llm.default_reply = Reply(LONG_REPLY, token_delay=0.01)
    env = fake_model_env(tmp_path_factory.mktemp("edge"), llm, TTS_ENGINES="espeak")
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"]
    finally:
        server.stop()
        llm.stop()


async def _started(ws) -> None:
    await ws.send(json.dumps({"type": "session.start", "instance": "nova"}))
    while (event := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] != "session.started":
        assert event["type"] != "error" or not event["fatal"], event


async def test_a_message_over_daphnes_limit_gets_close_1009_not_a_dropped_connection(served):
    server, token = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
        await _started(ws)
        await ws.send(bytes(100_000))  # Over WS_MAX_FRAME_BYTES, under daphne's 1 MiB.
        event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (event["code"], event["fatal"]) == ("frame_too_large", False)
        await ws.send(bytes(1_048_578))  # Over daphne's --websocket-max-message-size.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None, "the server sent a close frame"
    assert closed.value.rcvd.code == 1009


async def test_refused_handshake_reads_the_code_over_the_network(served):
    server, _token = served
    async with websockets.connect(f"{server.ws}/ws/voice/?token=voz_wrong") as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert event["code"] == "unauthorized"
    assert closed.value.rcvd.code == 4401


async def test_clients_leaving_mid_reply_leave_no_error_in_the_log(served):
    server, token = served
    for _ in range(4):
        async with websockets.connect(f"{server.ws}/ws/voice/?token={token}") as ws:
            await _started(ws)
            await ws.send(json.dumps({"type": "input_text", "text": "Tell me a long story."}))
            while not isinstance(await asyncio.wait_for(ws.recv(), 60), bytes):
                pass  # Leave as soon as audio flows.
    await asyncio.sleep(2)
    log = server.output()
    assert "closed protocol" not in log
    assert "Traceback" not in log
    assert " ERROR " not in log
