"""daphne closes HTTP connections that do not send a whole request in time (slowloris).

Under daphne, Twisted's `HTTPChannel` had one bound: an idle timeout of 60 s that every byte
resets. A client sending a header line every 50 s, or a body a byte at a time, held its
connection for ever, and so could a few hundred of them (issue 21 item 10). daphne's own
`--http-timeout` bounds only the application's response. Here, while a connection is receiving
a request (`HTTP_REQUEST_TIMEOUT_SECONDS`, T; `HTTP_REQUEST_MIN_RATE`, R bytes a second):

- the request head (request line and headers) must be complete within T of the connection
  opening or of the previous response's end, so an idle keep-alive connection closes after T;
- the body then has T more, plus one second for every R bytes received: an upload faster than R
  is never cut, a trickle is;
- no byte for T closes it too (Twisted's idle timeout, set to T).

A connection cut after part of a request arrived is answered 408 `request_timeout` (JSON,
`Connection: close`); one that sent nothing is just closed. A WebSocket handshake is a request
head, bounded the same; once it is complete, daphne's `--websocket_connect_timeout` (20 s,
realtime/server.py) bounds the application's accept. Nothing here bounds a response.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web import http

MULTIPART_SLACK_BYTES = 1024 * 1024  # A form's boundaries, part headers and other fields.

RESPONSE_408 = json.dumps(
    {
        "detail": "The request did not arrive in time; send it whole, without pauses.",
        "code": "request_timeout",
        "errors": [],
    }
).encode()


def max_body_bytes() -> int:
    """The largest request body any door takes (bytes; see the module docstring)."""
    from django.conf import settings

    largest = max(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0, settings.STT_MAX_UPLOAD_BYTES)
    return largest + MULTIPART_SLACK_BYTES


def _response_413(limit: int) -> bytes:
    body = json.dumps(
        {
            "detail": f"The body is over {limit} bytes, more than any request here takes.",
            "code": "too_large",
            "errors": [],
        }
    ).encode()
    return (
        b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


class DeadlineHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel with a deadline on receiving each request and a bound on its
    body's size, `body_limit` bytes (None: none) (see above)."""

    def __init__(
        self,
        timeout_s: float,
        min_rate: float,
        clock=time.monotonic,
        body_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.request_timeout_s = timeout_s
        self.min_rate = min_rate
        self.body_limit = body_limit
        self._refused = False
        self._clock = clock
        self._since: float | None = None  # The receiving phase's start; None: not receiving.
        self._body_since: float | None = None  # When the head was complete.
        self._body_bytes = 0
        self._heard = False  # Part of a request arrived in this phase.
        self._deadline_call: IDelayedCall | None = None

    # Phases: receiving a request (head, then body) → handled (no deadline) → receiving …

    def connectionMade(self) -> None:
        self.timeOut = self.request_timeout_s  # Twisted's idle timeout, set by super().
        super().connectionMade()
        self._receive()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._since is not None:
            self._heard = True
            if self._body_since is not None:
                self._body_bytes += len(data)
                if self.body_limit is not None and self._body_bytes > self.body_limit:
                    self._refuse_too_large()  # A chunked body has no length to check first.
                    return
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._body_since = self._clock()
        if self.body_limit is not None and (self.length or 0) > self.body_limit:
            self._refuse_too_large()  # Before super(): no "100 Continue" invites the body.
            return
        super().allHeadersReceived()

    def _refuse_too_large(self) -> None:
        self._refused = True
        self._stop()
        if self.transport is not None:
            self.transport.write(_response_413(self.body_limit or 0))
        self.loseConnection()  # Twisted stops reading from the peer at once.

    def allContentReceived(self) -> None:
        self._stop()  # The request is whole: the application answers, however long it takes.
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._receive()  # First: super() may go on at once with a request already buffered.
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        self._stop()
        super().connectionLost(reason)

    def setTimeout(self, period: float | None) -> float | None:
        if period is None:  # Twisted stops watching this channel (e.g. handed over to HTTP/2).
            self._stop()
        return super().setTimeout(period)

    # The deadline --------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When the request being received must be whole (monotonic s), or None."""
        if self._since is None:
            return None
        if self._body_since is None:
            return self._since + self.request_timeout_s
        allowance = self._body_bytes / self.min_rate if self.min_rate > 0 else float("inf")
        return self._body_since + self.request_timeout_s + allowance

    def _receive(self) -> None:
        self._stop()
        self._since, self._body_since, self._body_bytes, self._heard = self._clock(), None, 0, False
        self._schedule()

    def _stop(self) -> None:
        self._since = self._body_since = None
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None

    def _schedule(self) -> None:
        deadline = self.deadline()
        if deadline is not None:
            self._deadline_call = self.callLater(max(0.0, deadline - self._clock()), self._check)

    def _check(self) -> None:
        self._deadline_call = None
        deadline = self.deadline()
        if deadline is None:
            return
        if self._clock() < deadline:  # The body came faster than the minimum rate: go on.
            self._schedule()
            return
        self._since = None
        if self._heard and self.transport is not None:
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(RESPONSE_408), RESPONSE_408)
            )
        self.timeoutConnection()  # Close, and abort if the peer does not let go (Twisted's).


def _channel_protocol(factory: http.HTTPFactory) -> Any:
    """What daphne's HTTP factory builds per connection: Twisted's own (HTTP/2 negotiation
    included), around a channel with the deadline."""
    from django.conf import settings

    channel = DeadlineHTTPChannel(
        settings.HTTP_REQUEST_TIMEOUT_SECONDS,
        settings.HTTP_REQUEST_MIN_RATE,
        body_limit=max_body_bytes(),
    )
    # Twisted's private wrapper: what `http.HTTPFactory.protocol` itself returns (tests/
    # test_request_deadline.py fails if a Twisted upgrade changes it).
    return http._GenericHTTPChannelProtocol(channel)


def bound_requests() -> None:
    """Make daphne's HTTP connections use the deadline (once; off with a timeout of 0)."""
    from daphne.http_protocol import HTTPFactory
    from django.conf import settings

    if getattr(HTTPFactory, "voz_request_deadline", False) or not (
        settings.HTTP_REQUEST_TIMEOUT_SECONDS > 0
    ):
        return
    HTTPFactory.protocol = _channel_protocol
    HTTPFactory.voz_request_deadline = True
