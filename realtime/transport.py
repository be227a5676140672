"""The WebSocket transport (daphne) tells a client why it hangs up.

daphne caps incoming messages at `--websocket-max-message-size` (1 MiB by default). On a bigger
message, or any other protocol failure, its autobahn factory *drops the TCP connection* without a
close frame (autobahn's `failByDrop`), so the client never learns why. `close_on_failure()` makes
it send the close frame first: 1009 "message too big" with the reason. Our own limit,
WS_MAX_FRAME_BYTES, sits below daphne's and answers a non-fatal `frame_too_large` event.
"""

from __future__ import annotations

DAPHNE_DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


def close_on_failure() -> None:
    """Patch daphne's WebSocket factory (once) to fail connections with a close frame."""
    from daphne import ws_protocol

    factory = ws_protocol.WebSocketFactory
    if getattr(factory, "voz_close_on_failure", False):
        return
    original = factory.setProtocolOptions

    def set_protocol_options(self, *args, **kwargs):
        kwargs.setdefault("failByDrop", False)
        return original(self, *args, **kwargs)

    factory.setProtocolOptions = set_protocol_options
    factory.voz_close_on_failure = True
