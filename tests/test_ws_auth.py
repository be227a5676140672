"""WebSocket doors: origin checks and token/session authentication (through the real ASGI app)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from realtime.asgi import application
from tests.edge_helpers import refusal

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(path: str = "/ws/ping/", headers=None, subprotocols=None):
    return WebsocketCommunicator(
        application, path, headers=headers or [], subprotocols=subprotocols
    )


async def test_token_in_query_without_origin_is_accepted(token):
    ws = communicator(f"/ws/ping/?token={token}")
    connected, _ = await ws.connect()
    assert connected
    assert await ws.receive_json_from() == {"type": "hello", "user": "alice"}
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}
    await ws.disconnect()


async def test_token_as_subprotocol_selects_voz_v1(token):
    ws = communicator(subprotocols=["voz.v1", f"bearer.{token}"])
    connected, subprotocol = await ws.connect()
    assert connected
    assert subprotocol == "voz.v1"
    await ws.disconnect()


async def test_no_credentials_is_closed_4401():
    code, event = await refusal(communicator())
    assert (code, event["code"]) == (4401, "unauthorized")


async def test_bad_token_is_closed_4401():
    code, event = await refusal(communicator("/ws/ping/?token=voz_nope"))
    assert (code, event["code"]) == (4401, "unauthorized")


async def test_foreign_origin_is_refused_even_with_token(token):
    ws = communicator(f"/ws/ping/?token={token}", headers=[(b"origin", b"https://evil.example")])
    code, event = await refusal(ws)
    assert (code, event["code"]) == (4403, "forbidden_origin")


async def test_own_origin_with_token_is_accepted(token):
    ws = communicator(
        f"/ws/ping/?token={token}",
        headers=[(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000")],
    )
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


async def test_extra_origin_from_settings(token, settings):
    settings.WS_ALLOWED_ORIGINS = ["https://kiosk.example.com"]
    ws = communicator(
        f"/ws/ping/?token={token}", headers=[(b"origin", b"https://kiosk.example.com")]
    )
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_browser_session_with_own_origin(user):
    cookie = await database_sync_to_async(_session_cookie)(user)
    ws = communicator(
        headers=[
            (b"origin", b"http://127.0.0.1:8000"),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", cookie),
        ]
    )
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from())["user"] == "alice"
    await ws.disconnect()


async def test_session_cookie_without_origin_is_not_enough(user):
    cookie = await database_sync_to_async(_session_cookie)(user)
    code, event = await refusal(communicator(headers=[(b"cookie", cookie)]))
    assert (code, event["code"]) == (4401, "unauthorized")
