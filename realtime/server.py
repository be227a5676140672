"""daphne with a bound on what one WebSocket may hold unsent: `python -m realtime.server` takes
daphne's own arguments (`-b`, `-p`, …, `realtime.asgi:application`).

An ASGI `websocket.send` never waits: daphne hands the frame to Twisted's transport, which keeps
in memory whatever the peer's TCP window does not take. A client that stops reading therefore
made reply audio pile up in the server without limit. After each send this server counts what
the socket holds unsent (Twisted's write buffer and the kernel's send queue); past
`WS_MAX_BUFFERED_BYTES` it stops writing that socket's frames, queues the protocol's
`slow_client` error and a 4429 close (docs/protocol.md), and drops the TCP connection
`WS_SLOW_CLIENT_GRACE_SECONDS` later if the client has not read them by then. The application
then sees an ordinary disconnect.

Every 30 s after connections closed it collects reference cycles and returns free heap to the
system (`MemoryReturn`). Before listening it loads what the first sessions would (`WARM_UP`,
`realtime.warm_up`). Its access log redacts secrets (`realtime.access_log`). A connection must send
each HTTP request whole in time (`HTTP_REQUEST_TIMEOUT_SECONDS`, `realtime.request_deadline`). `--workers N`
(`WEB_WORKERS`) runs N such servers on one port under a supervisor (`realtime.workers`). Other
defaults differ from daphne's for a loaded server: the WebSocket handshake (the time the
application has to accept) may take `--websocket_connect_timeout` 20 s rather than 5 s.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import struct
import sys
import time
from collections import deque
from typing import Any

from daphne import cli
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from realtime import close_codes, workers
from realtime.access_log import RedactingAccessLog
from realtime.request_deadline import bound_requests
from realtime.warm_up import warm_up

try:  # SIOCOUTQ is TIOCOUTQ on Linux; elsewhere only Twisted's own buffer is counted.
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ if sys.platform.startswith("linux") else None
except ImportError:
    _SIOCOUTQ = None

logger = logging.getLogger("realtime.server")  # Also when run as __main__.

CLOSE_SLOW_CLIENT = close_codes.SLOW_CLIENT  # docs/protocol.md.
HANDSHAKE_TIMEOUT_S = 20
_frozen_objects = 0  # Objects `BoundedServer.run` froze out of the collector's reach.


def transport_buffered_bytes(transport: Any) -> int | None:
    """Bytes written to a Twisted transport and not yet taken by the peer: Twisted's write buffer
    plus the kernel's send queue (Linux SIOCOUTQ; on loopback the kernel alone takes megabytes).
    Wrapping transports (TLS) are summed with what they wrap. None if the transport does not say
    (it is then not bounded here)."""
    total, seen = 0, False
    while transport is not None:
        if hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
            total += len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            total += _kernel_unsent_bytes(transport)
            seen = True
        transport = getattr(transport, "transport", None)
    return total if seen else None


def _kernel_unsent_bytes(transport: Any) -> int:
    """Bytes in the socket's kernel send queue, not yet acknowledged by the peer (0 if unknown)."""
    if _SIOCOUTQ is None:
        return 0
    try:
        packed = fcntl.ioctl(transport.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return 0
    return struct.unpack("i", packed)[0]


class LoopLag:
    """How late the event loop runs a callback scheduled every `interval_s`: the time any
    coroutine waits behind blocking work. Keeps the last `window` samples (ms)."""

    def __init__(self, interval_s: float = 0.05, window: int = 1200) -> None:
        self.interval_s = interval_s
        self.samples_ms: deque[float] = deque(maxlen=window)
        self._due = 0.0

    def start(self) -> None:
        self._due = time.monotonic() + self.interval_s
        asyncio.get_event_loop().call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        self.samples_ms.append(max(0.0, (time.monotonic() - self._due) * 1000))
        self.start()

    def summary(self) -> dict:
        """Lag over the last minute (window × interval): p50, p99 and max in ms; and over the
        last 10 s (`last_10_s`: p99 and max), where a short burst is not diluted by a quiet
        minute."""
        ordered = sorted(self.samples_ms)
        if not ordered:
            return {"samples": 0}
        recent = sorted(list(self.samples_ms)[-max(1, int(10 / self.interval_s)) :])
        return {
            "samples": len(ordered),
            "p50_ms": _pick(ordered, 0.5),
            "p99_ms": _pick(ordered, 0.99),
            "max_ms": _pick(ordered, 1),
            "last_10_s": {"p99_ms": _pick(recent, 0.99), "max_ms": _pick(recent, 1)},
        }


def _pick(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class MemoryReturn:
    """Give memory of closed connections back to the system: every `every_s`, if connections
    closed since the last look, collect reference cycles and ask glibc to return free heap pages
    (`malloc_trim`), which it otherwise keeps (RSS never came down after a load)."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self.closed = 0  # Connections closed so far (counted by the server).
        self._handled = 0
        path = ctypes.util.find_library("c")
        self._trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None

    def start(self) -> None:
        asyncio.get_event_loop().call_later(self.every_s, self._tick)

    def _tick(self) -> None:
        try:
            if self.closed != self._handled:
                self._handled = self.closed
                started = time.monotonic()
                gc.collect()
                if self._trim is not None:
                    self._trim(0)
                logger.info("Returned memory in %.0f ms", (time.monotonic() - started) * 1000)
        finally:
            self.start()


def process_details() -> dict:
    """`/readyz` details.process: this process's pid, under `--workers` its number, and how many
    objects loaded at start are out of the garbage collector's reach (`gc.freeze`)."""
    worker = os.environ.get(workers.WORKER_ENV)
    return {
        "pid": os.getpid(),
        "worker": int(worker) if worker else None,
        "gc_frozen_objects": _frozen_objects,
    }


class BoundedServer(Server):
    """daphne's Server, closing WebSockets whose unsent bytes pass a bound; it also measures its
    event loop's lag (`/readyz` details.event_loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.conf import settings

        from realtime import readiness

        super().__init__(*args, **kwargs)
        bound_requests()  # Whatever the application: slow requests end (HTTP_REQUEST_TIMEOUT…).
        self.ws_max_buffered_bytes: int = settings.WS_MAX_BUFFERED_BYTES
        self.ws_slow_client_grace_s: float = settings.WS_SLOW_CLIENT_GRACE_SECONDS
        self.slow_clients: set[WebSocketProtocol] = set()
        self.loop_lag = LoopLag()
        self.memory_return = MemoryReturn()
        reactor.callWhenRunning(self.loop_lag.start)
        reactor.callWhenRunning(self.memory_return.start)
        readiness.register("event_loop", self.loop_lag.summary)
        readiness.register("process", process_details)

    def protocol_disconnected(self, protocol: Any) -> None:
        if isinstance(protocol, WebSocketProtocol):
            self.memory_return.closed += 1
        super().protocol_disconnected(protocol)

    def run(self) -> None:
        global _frozen_objects

        warm_up()  # Before listening: no session and no first burst waits for it.
        # What is loaded by now (Django, the app, the models) lives as long as the process.
        # Frozen out of the collector's reach, a full collection walks only what sessions
        # allocate: 59-65 ms on the loop for the ~134,000 start-up objects before, ~0 after
        # (measured here); those pauses were the 50-98 ms spikes while sessions started.
        gc.collect()
        gc.freeze()
        # Counted once: gc.get_freeze_count() walks every frozen object (~1 ms with the GIL).
        _frozen_objects = gc.get_freeze_count()
        super().run()

    async def handle_reply(self, protocol: Any, message: dict) -> None:
        if not isinstance(protocol, WebSocketProtocol) or message.get("type") != "websocket.send":
            await super().handle_reply(protocol, message)
            return
        if protocol in self.slow_clients:
            return  # Being closed for not reading: nothing more is written for it.
        await super().handle_reply(protocol, message)
        # What the socket holds is at most what it held when last measured plus what was
        # written since: measure (an ioctl, 8 % of the event loop when done on every send at
        # 300 sessions) only once that upper bound passes the limit.
        # (Text counted at 4 bytes a character and 14 bytes of framing: an upper bound.)
        size = len(message.get("bytes") or b"") + 4 * len(message.get("text") or "") + 14
        bound = getattr(protocol, "_voz_unsent_at_most", 0) + size
        if bound <= self.ws_max_buffered_bytes:
            protocol._voz_unsent_at_most = bound
            return
        buffered = transport_buffered_bytes(protocol.transport)
        protocol._voz_unsent_at_most = buffered if buffered is not None else 0
        if buffered is not None and buffered > self.ws_max_buffered_bytes:
            self.close_slow_client(protocol, buffered)

    def close_slow_client(self, protocol: WebSocketProtocol, buffered: int) -> None:
        """Queue the documented error and close, then drop the connection after the grace."""
        self.slow_clients.add(protocol)
        logger.warning(
            "Closing slow WebSocket client %s: %d bytes unsent (bound %d)",
            protocol.client_addr,
            buffered,
            self.ws_max_buffered_bytes,
        )
        error = {
            "type": "error",
            "code": "slow_client",
            "message": "The client does not read fast enough; the connection is closed.",
            "fatal": True,
        }
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            protocol.sendMessage(json.dumps(error).encode(), False)
            protocol.sendClose(code=CLOSE_SLOW_CLIENT, reason="slow client")
        reactor.callLater(self.ws_slow_client_grace_s, self._drop_slow_client, protocol)

    def _drop_slow_client(self, protocol: WebSocketProtocol) -> None:
        self.slow_clients.discard(protocol)
        if protocol.state != WebSocketProtocol.STATE_CLOSED:
            logger.warning("Dropping slow WebSocket client %s", protocol.client_addr)
            protocol.dropConnection(abort=True)


class BoundedCommandLineInterface(CommandLineInterface):
    server_class = BoundedServer

    def __init__(self, listen_fd: int | None = None) -> None:
        super().__init__()
        if listen_fd is not None:  # A worker (realtime.workers): accept on the inherited socket.
            parse = self.parser.parse_args

            def parse_args(args=None, namespace=None):
                parsed = parse(args, namespace)
                parsed.host, parsed.port, parsed.file_descriptor = None, None, listen_fd
                return parsed

            self.parser.parse_args = parse_args

    def run(self, args: list[str]) -> None:
        if not any(arg.startswith("--websocket_connect_timeout") for arg in args):
            args = ["--websocket_connect_timeout", str(HANDSHAKE_TIMEOUT_S), *args]
        super().run(args)


def main(argv: list[str]) -> int:
    """One server, or with `--workers N` (`WEB_WORKERS`) a supervisor of N (realtime.workers)."""
    inherited = os.environ.get(workers.FD_ENV)
    if inherited is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
        from django.conf import settings

        try:
            count, argv = workers.split_workers(argv, settings.WEB_WORKERS)
            if count > 1:
                logging.basicConfig(
                    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
                )
                return workers.serve(count, argv)
        except workers.WorkersError as exc:
            print(f"realtime.server: {exc}", file=sys.stderr)
            return 2
    else:
        workers.die_with_supervisor()
    # daphne's CLI builds its access log from this module global: swap in the redacting one.
    cli.AccessLogGenerator = RedactingAccessLog
    BoundedCommandLineInterface(None if inherited is None else int(inherited)).run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
