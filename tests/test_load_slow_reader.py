"""A client that stops reading is closed by the server (realtime/server.py) within 10 s of passing
the bound on unsent bytes, with the documented `slow_client` error and close code 4429.

The client is a raw socket with a small receive buffer, so the kernel takes little of what the
server writes and the rest piles up in daphne's transport, which is what the bound counts.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import socket
import struct
import time
import urllib.request
from datetime import datetime

import pytest

from tests.fake_openai import FakeOpenAI, Reply
from tests.servers import Daphne, fake_model_env, prepare_database, start_daphne

BOUND = 256 * 1024
GRACE_S = 5
LONG_REPLY = " ".join(
    f"Sentence number {n} tells a long story about the lighthouse and the sea." for n in range(12)
)


class RawWebSocket:
    """The least client that speaks WebSocket: masked text frames out, frames parsed in."""

    def __init__(self, port: int, path: str, token: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: voz.v1, bearer.{token}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        return data

    def send_json(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (servers never mask; no fragmentation here)."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        return first & 0x0F, self._take(length)

    def until_json(self, kind: str) -> dict:
        while True:
            opcode, payload = self.frame()
            if opcode == 1 and json.loads(payload)["type"] == kind:
                return json.loads(payload)

    def reset_seen(self) -> bool:
        """True once the server has dropped the connection (RST or FIN), without reading data."""
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error in (errno.ECONNRESET, errno.EPIPE):
            return True
        try:
            # Peek without consuming: b"" is a FIN with nothing left; an error is a reset.
            self.sock.setblocking(False)
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.setblocking(True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    llm = FakeOpenAI().start()
    llm.default_reply = Reply(LONG_REPLY)
    env = fake_model_env(
        tmp_path_factory.mktemp("slow"),
        llm,
        TTS_ENGINES="espeak",
        WS_MAX_BUFFERED_BYTES=str(BOUND),
        WS_SLOW_CLIENT_GRACE_SECONDS=str(GRACE_S),
        WS_TURNS_PER_MINUTE="120",
    )
    token = prepare_database(env)["token"]
    daphne = start_daphne(env)
    yield daphne, token
    daphne.stop()
    llm.stop()


def flagged_at(daphne: Daphne, port: int, limit_s: float) -> float:
    """When the server logged closing the client on local port `port` (epoch seconds)."""
    deadline = time.monotonic() + limit_s
    pattern = re.compile(
        rf"^(\S+ \S+) WARNING realtime.server: Closing slow WebSocket client .*'?{port}'?\]?:",
        re.M,
    )
    while time.monotonic() < deadline:
        found = pattern.search(daphne.output())
        if found:
            return datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        time.sleep(0.2)
    raise AssertionError("the server never flagged the slow client:\n" + daphne.output()[-3000:])


def start_reading_less(daphne: Daphne, token: str) -> RawWebSocket:
    client = RawWebSocket(daphne.port, "/ws/voice/", token)
    client.send_json(
        {"type": "session.start", "instance": "nova", "output_audio": {"format": "pcm16"}}
    )
    client.until_json("session.started")
    for turn in range(3):  # Each reply is ~1 MB of audio; the client reads none of it.
        client.send_json({"type": "input_text", "text": f"Tell me a story, part {turn}."})
    return client


def healthz(daphne: Daphne) -> int:
    with urllib.request.urlopen(f"{daphne.http}/healthz", timeout=10) as response:
        return response.status


def test_a_client_that_never_reads_is_dropped_within_10_s_of_the_bound(server):
    daphne, token = server
    client = start_reading_less(daphne, token)
    local_port = client.sock.getsockname()[1]
    flagged = flagged_at(daphne, local_port, 120)
    while not client.reset_seen():
        assert time.time() - flagged < 10, "still connected 10 s after passing the bound"
        time.sleep(0.1)
    assert time.time() - flagged < 10
    # The session ended (autobahn's close timeout or the server's own drop, whichever first).
    deadline = time.monotonic() + 10
    while f":{local_port} - - " not in daphne.output().split("Closing slow", 1)[1]:
        assert time.monotonic() < deadline, daphne.output()[-2000:]
        time.sleep(0.2)
    assert "WSDISCONNECT" in daphne.output().split("Closing slow", 1)[1]
    assert healthz(daphne) == 200
    client.sock.close()


def test_a_client_that_reads_again_gets_slow_client_and_4429(server):
    daphne, token = server
    client = start_reading_less(daphne, token)
    flagged_at(daphne, client.sock.getsockname()[1], 120)
    events, close = [], None
    while close is None:
        opcode, payload = client.frame()
        if opcode == 1:
            events.append(json.loads(payload))
        elif opcode == 8:
            close = struct.unpack("!H", payload[:2])[0]
    assert close == 4429
    assert events[-1] == events[-1] | {"type": "error", "code": "slow_client", "fatal": True}
    assert any(event["type"] == "response.audio" for event in events)
    client.sock.close()


def test_readyz_reports_the_servers_event_loop_lag(server):
    daphne, _ = server
    time.sleep(1)  # A second of samples every 50 ms.
    with urllib.request.urlopen(f"{daphne.http}/readyz", timeout=10) as response:
        lag = json.loads(response.read())["details"]["event_loop"]
    assert lag["samples"] >= 10
    assert 0 <= lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
    assert 0 <= lag["last_10_s"]["p99_ms"] <= lag["last_10_s"]["max_ms"] <= lag["max_ms"]


def test_the_objects_loaded_at_start_are_out_of_the_collectors_reach(server):
    daphne, _ = server
    with urllib.request.urlopen(f"{daphne.http}/readyz", timeout=10) as response:
        process = json.loads(response.read())["details"]["process"]
    assert process["gc_frozen_objects"] > 50_000  # Django, the app and its models: ~134,000
