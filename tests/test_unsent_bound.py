"""The slow-reader bound measures a socket (an ioctl) only when what it may hold could pass the
limit: at most the last measured figure plus everything written since."""

from __future__ import annotations

from daphne.ws_protocol import WebSocketProtocol

import realtime.server as server_module
from realtime.server import BoundedServer

LIMIT = 10_000


def bounded_server(protocol) -> BoundedServer:
    server = BoundedServer.__new__(BoundedServer)  # no listening, no reactor: handle_reply only
    server.connections = {protocol: {}}
    server.ws_max_buffered_bytes = LIMIT
    server.slow_clients = set()
    server.closed = []
    server.close_slow_client = lambda p, buffered: server.closed.append(buffered)
    return server


def protocol_writing_to(written: list) -> WebSocketProtocol:
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    protocol.handle_reply = written.append
    protocol.transport = object()
    return protocol


async def test_measured_only_when_the_upper_bound_passes_the_limit(monkeypatch):
    held = {"bytes": 0}
    measured = []

    def measure(transport):
        measured.append(held["bytes"])
        return held["bytes"]

    monkeypatch.setattr(server_module, "transport_buffered_bytes", measure)
    written: list = []
    protocol = protocol_writing_to(written)
    server = bounded_server(protocol)
    frame = {"type": "websocket.send", "bytes": b"\0" * 986}  # 1,000 with framing

    for _ in range(10):  # 10,000 bytes: could all still be unsent, but not past the limit
        await server.handle_reply(protocol, frame)
    assert measured == [] and len(written) == 10

    await server.handle_reply(protocol, frame)  # 11,000 could be unsent: measure
    assert measured == [0] and server.closed == []  # the client reads: all was taken
    for _ in range(10):
        await server.handle_reply(protocol, frame)
    assert measured == [0]  # counted from the measurement again

    held["bytes"] = 10_500  # the client stopped reading
    await server.handle_reply(protocol, frame)
    assert measured == [0, 10_500] and server.closed == [10_500]


async def test_text_is_counted_as_an_upper_bound(monkeypatch):
    measured = []
    monkeypatch.setattr(
        server_module, "transport_buffered_bytes", lambda t: measured.append(1) or 0
    )
    protocol = protocol_writing_to([])
    server = bounded_server(protocol)
    # 2,000 characters may be 8,000 bytes in UTF-8 (+ framing): the second one could pass 10,000.
    frame = {"type": "websocket.send", "text": "ñ" * 2_000}
    await server.handle_reply(protocol, frame)
    assert measured == []
    await server.handle_reply(protocol, frame)
    assert measured == [1]
