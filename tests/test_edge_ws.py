"""The WebSocket edge (issue 14 items 1, 2, 3, 9, 10, 11, 13, 18), through the real ASGI app."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from autobahn.exception import Disconnected
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from accounts.models import ApiToken
from accounts.services import token_revoke
from realtime.asgi import application
from tests.edge_helpers import refusal
from tests.voice_helpers import connect, next_event, send, start_session

pytestmark = pytest.mark.django_db(transaction=True)

DEEP_JSON = '{"type":"ping","id":' + "[" * 1000 + "]" * 1000 + "}"


async def ping_answers(ws: WebsocketCommunicator, ident: str = "alive") -> bool:
    await send(ws, {"type": "ping", "id": ident})
    for _ in range(50):
        event = await next_event(ws)
        if event["type"] == "pong":
            return event.get("id") == ident
    return False


def _session_tasks() -> list[asyncio.Task]:
    names = ("VoiceSession", "Outbox.run")
    return [t for t in asyncio.all_tasks() if any(n in repr(t.get_coro()) for n in names)]


# 1. Text that cannot be encoded or stored --------------------------------------------------


async def test_lone_surrogate_is_refused_and_the_session_answers_again(token, instance):
    ws = await connect(token)
    await start_session(ws, "rosa")
    await ws.send_to(text_data='{"type":"ping","id":"x\\ud83d"}')
    event = await next_event(ws)
    assert (event["type"], event["code"], event["field"], event["fatal"]) == (
        "error",
        "invalid_text",
        "id",
        False,
    )
    assert await ping_answers(ws)
    await ws.disconnect()


async def test_nul_in_input_text_is_refused_before_the_model(token, instance, fake_openai):
    ws = await connect(token)
    await start_session(ws, "rosa")
    await ws.send_to(text_data='{"type":"input_text","text":"hola\\u0000"}')
    event = await next_event(ws)
    assert (event["code"], event["field"]) == ("invalid_text", "text")
    assert await ping_answers(ws)
    assert fake_openai.requests == []
    await ws.disconnect()


async def test_observe_and_ping_sockets_refuse_bad_text_and_binary_too(token, instance):
    for path in ("/ws/ping/", "/ws/observe/rosa/"):
        ws = WebsocketCommunicator(application, f"{path}?token={token}")
        assert (await ws.connect())[0]
        await ws.receive_json_from()  # hello / observe.started
        await ws.send_to(text_data='{"type":"ping","id":"\\u0000"}')
        assert (await ws.receive_json_from())["code"] == "invalid_text"
        await ws.send_to(bytes_data=b"\x00\x01")
        assert (await ws.receive_json_from())["code"] == "binary_not_supported"
        await ws.send_to(text_data=DEEP_JSON)
        assert (await ws.receive_json_from())["code"] == "bad_json"
        await ws.send_json_to({"type": "ping"})
        assert (await ws.receive_json_from())["type"] == "pong"
        await ws.disconnect()


# 2. Deep JSON ------------------------------------------------------------------------------


async def test_deeply_nested_json_is_refused_the_session_survives_and_cleans_up(token, instance):
    assert len(DEEP_JSON) < 2100
    before = len(_session_tasks())
    ws = await connect(token)
    await start_session(ws, "rosa")
    await ws.send_to(text_data=DEEP_JSON)
    event = await next_event(ws)
    assert (event["code"], event["fatal"]) == ("bad_json", False)
    assert await ping_answers(ws)
    await ws.disconnect()
    for _ in range(50):  # The disconnect handler ran: the session's tasks are gone.
        if len(_session_tasks()) == before:
            break
        await asyncio.sleep(0.05)
    assert len(_session_tasks()) == before


# 3. Frame size -----------------------------------------------------------------------------


async def test_text_frame_over_the_limit_is_refused_not_dropped(token, instance, settings):
    settings.WS_MAX_FRAME_BYTES = 1000
    ws = await connect(token)
    await ws.send_to(text_data=json.dumps({"type": "ping", "id": "x" * 2000}))
    event = await next_event(ws)
    assert (event["code"], event["fatal"]) == ("frame_too_large", False)
    assert await ping_answers(ws)
    await ws.disconnect()


# 9. Origins: scheme, host and port ----------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost:5555",  # Another local port: another site.
        b"http://127.0.0.1:9999",
        b"http://[::1]:8000",
        b"http://testserver",
        b"https://127.0.0.1:8000",  # Another scheme.
        b"null",
    ],
)
async def test_only_the_exact_own_origin_gets_a_cookie_session(user, origin):
    cookie = await sync_to_async(_session_cookie)(user)
    ws = WebsocketCommunicator(
        application,
        "/ws/ping/",
        headers=[(b"origin", origin), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)],
    )
    code, event = await refusal(ws)
    assert (code, event["code"]) == (4403, "forbidden_origin")


async def test_own_origin_is_same_scheme_host_and_port(user):
    cookie = await sync_to_async(_session_cookie)(user)
    ws = WebsocketCommunicator(
        application,
        "/ws/ping/",
        headers=[
            (b"origin", b"http://127.0.0.1:8000"),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", cookie),
        ],
    )
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["user"] == "alice"
    await ws.disconnect()


async def test_configured_origin_must_match_its_port(token, settings):
    settings.WS_ALLOWED_ORIGINS = ["https://kiosk.example.com"]
    wrong_port = WebsocketCommunicator(
        application,
        f"/ws/ping/?token={token}",
        headers=[(b"origin", b"https://kiosk.example.com:444")],
    )
    assert (await refusal(wrong_port))[0] == 4403
    default_port = WebsocketCommunicator(
        application,
        f"/ws/ping/?token={token}",
        headers=[(b"origin", b"https://kiosk.example.com:443")],
    )
    assert (await default_port.connect())[0]
    await default_port.disconnect()


# 10. Revocation, deactivation and logout close open sockets ---------------------------------


async def _closed_with(ws: WebsocketCommunicator, timeout: float = 10) -> tuple[dict, int]:
    """The unauthorized event and the close code, skipping whatever else arrives first."""
    event = None
    for _ in range(200):
        frame = await ws.receive_output(timeout)
        if frame["type"] == "websocket.close":
            return event, frame["code"]
        if frame.get("text"):
            candidate = json.loads(frame["text"])
            if candidate.get("code") == "unauthorized":
                event = candidate
    raise AssertionError("never closed")


async def test_revoking_a_token_closes_its_voice_and_observe_sockets(token, instance, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    voice = await connect(token)
    await start_session(voice, "rosa")
    observer = WebsocketCommunicator(application, f"/ws/observe/rosa/?token={token}")
    assert (await observer.connect())[0]
    await sync_to_async(lambda: [token_revoke(token=t) for t in ApiToken.objects.all()])()
    for ws in (voice, observer):
        event, code = await _closed_with(ws)
        assert code == 4401
        assert event["fatal"] is True
        await ws.disconnect()


async def test_deactivating_the_user_closes_the_socket(token, user, instance, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    ws = await connect(token)
    await start_session(ws, "rosa")
    user.is_active = False
    await sync_to_async(user.save)()
    _event, code = await _closed_with(ws)
    assert code == 4401
    await ws.disconnect()


async def test_logging_out_closes_the_browser_socket(user, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = WebsocketCommunicator(
        application,
        "/ws/ping/",
        headers=[
            (b"origin", b"http://127.0.0.1:8000"),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", cookie),
        ],
    )
    assert (await ws.connect())[0]
    await ws.receive_json_from()
    await sync_to_async(client.logout)()
    _event, code = await _closed_with(ws)
    assert code == 4401
    await ws.disconnect()


async def test_a_live_socket_stays_open_while_its_token_is_valid(token, instance, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.1
    ws = await connect(token)
    await start_session(ws, "rosa")
    await asyncio.sleep(0.5)
    assert await ping_answers(ws)
    await ws.disconnect()


async def test_one_query_checks_every_token_socket(token, user, instance, settings):
    """The re-check asks once for all token sockets of the process, not once per socket."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from consumers.credential_watch import credentials_fallen

    def check(sockets):
        with CaptureQueriesContext(connection) as queries:
            fallen = credentials_fallen(sockets)
        return fallen, len(queries.captured_queries)

    ids = await sync_to_async(lambda: list(ApiToken.objects.values_list("pk", flat=True)))()
    sockets = [(n, {"auth_method": "token", "auth_token_id": ids[0]}, user.pk) for n in range(50)]
    sockets.append((50, {"auth_method": "token", "auth_token_id": 999_999}, user.pk))
    fallen, queries = await sync_to_async(check)(sockets)
    assert fallen == {50} and queries == 1


async def test_a_failing_recheck_keeps_the_socket_and_a_later_one_closes_it(
    token, instance, settings, monkeypatch
):
    """An outage during the re-check keeps live calls; once the database answers, a revoked
    token still closes its socket."""
    import consumers.credential_watch as watch_module

    settings.WS_AUTH_RECHECK_SECONDS = 0.1
    real = watch_module.credentials_fallen
    outage = True

    def flaky(sockets):
        if outage:
            raise OperationalError("connection refused")
        return real(sockets)

    monkeypatch.setattr(watch_module, "credentials_fallen", flaky)
    ws = await connect(token)
    await start_session(ws, "rosa")
    await sync_to_async(lambda: [token_revoke(token=t) for t in ApiToken.objects.all()])()
    await asyncio.sleep(0.5)
    assert await ping_answers(ws), "the outage closed a live socket"
    outage = False
    _event, code = await _closed_with(ws)
    assert code == 4401
    await ws.disconnect()


# 11. Refusals during an outage -----------------------------------------------------------


async def test_handshake_during_a_database_outage_is_4503_unavailable(token, monkeypatch):
    def database_down(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", database_down)
    code, event = await refusal(WebsocketCommunicator(application, f"/ws/voice/?token={token}"))
    assert (code, event["code"]) == (4503, "unavailable")


# 13. A conversation is continued only by its owner ------------------------------------------


async def test_staff_cannot_continue_another_owners_conversation(instance, user, staff_user):
    from accounts.services import token_create
    from characters.models import Conversation

    conversation = await sync_to_async(Conversation.objects.create)(instance=instance, owner=user)
    staff_token = await sync_to_async(lambda: token_create(user=staff_user).plaintext)()
    ws = await connect(staff_token)
    await send(
        ws, {"type": "session.start", "instance": "rosa", "conversation": str(conversation.id)}
    )
    event = await next_event(ws)
    assert (event["type"], event["code"]) == ("error", "conversation_not_found")
    await ws.disconnect()


# 18. A gone client is not an error ----------------------------------------------------------


async def test_sends_after_the_client_left_are_dropped_quietly(caplog):
    """daphne raises autobahn's Disconnected on a send while the socket closes; the edge drops
    it (and everything after) instead of failing the consumer with a traceback."""
    from consumers.edge import WebSocketEdge

    sent = []

    async def daphne_send(message):
        if message["type"] == "websocket.send" and any(m.get("text") for m in sent):
            raise Disconnected("Attempt to send on a closed protocol")
        sent.append(message)

    async def app(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "first"})
        await send({"type": "websocket.send", "text": "second"})  # The client has gone.
        await send({"type": "websocket.send", "text": "third"})

    async def receive():
        await asyncio.sleep(3600)

    await WebSocketEdge(app)({"type": "websocket", "headers": []}, receive, daphne_send)
    assert [m.get("text") for m in sent] == [None, "first"]
    assert "closed protocol" not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()
