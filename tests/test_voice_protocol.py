"""The voice WebSocket's protocol errors and limits (no engines involved)."""

from __future__ import annotations

import pytest

from tests.voice_helpers import connect, next_event, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ping_pong_with_id(token):
    ws = await connect(token)
    await send(ws, {"type": "ping", "id": 7})
    assert await next_event(ws) == {"type": "pong", "id": 7}
    await ws.disconnect()


async def test_unauthenticated_is_closed_4401():
    from channels.testing import WebsocketCommunicator

    from realtime.asgi import application
    from tests.edge_helpers import refusal

    code, event = await refusal(WebsocketCommunicator(application, "/ws/voice/"))
    assert (code, event["code"]) == (4401, "unauthorized")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"no_type": 1}', "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "input_text", "text": "hola"}', "not_started"),
        ('{"type": "input_audio.commit"}', "not_started"),
        ('{"type": "response.cancel"}', "not_started"),
        ('{"type": "session.start"}', "invalid_message"),
        ('{"type": "session.start", "instance": "nobody"}', "instance_not_found"),
    ],
)
async def test_bad_messages_get_clear_non_fatal_errors(token, frame, code):
    ws = await connect(token)
    await ws.send_to(text_data=frame)
    event = await next_event(ws)
    assert event["type"] == "error"
    assert event["code"] == code
    assert event["fatal"] is False
    assert event["message"]
    await send(ws, {"type": "ping"})
    assert (await next_event(ws))["type"] == "pong"  # The session survives.
    await ws.disconnect()


async def test_binary_before_start_is_refused(token):
    ws = await connect(token)
    await ws.send_to(bytes_data=b"\x00\x00" * 160)
    event = await next_event(ws)
    assert (event["type"], event["code"]) == ("error", "not_started")
    await ws.disconnect()


async def test_oversized_frame_is_dropped_with_error(token, settings):
    settings.WS_MAX_FRAME_BYTES = 1000
    ws = await connect(token)
    await ws.send_to(bytes_data=b"\x00" * 1002)
    event = await next_event(ws)
    assert event["code"] == "frame_too_large"
    assert "1000" in event["message"]
    await ws.disconnect()


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"input_audio": {"format": "opus", "sample_rate": 16000}}, "unsupported_format"),
        ({"input_audio": {"format": "pcm16", "sample_rate": 4000}}, "unsupported_format"),
        ({"input_audio": {"format": "pcm16", "sample_rate": 96000}}, "unsupported_format"),
        ({"input_audio": {"format": "pcm16", "sample_rate": "fast"}}, "invalid_message"),
        ({"output_audio": {"format": "flac"}}, "unsupported_format"),
        ({"output_audio": "wav"}, "invalid_message"),
        ({"language": 5}, "invalid_message"),
    ],
)
async def test_session_start_validates_formats(token, instance, extra, code):
    ws = await connect(token)
    await send(ws, {"type": "session.start", "instance": "rosa", **extra})
    event = await next_event(ws)
    assert (event["type"], event["code"]) == ("error", code)
    await ws.disconnect()


async def test_other_owners_instance_is_not_found(token, other_instance):
    ws = await connect(token)
    await send(ws, {"type": "session.start", "instance": "nova"})
    event = await next_event(ws)
    assert event["code"] == "instance_not_found"
    await ws.disconnect()


async def test_foreign_conversation_is_refused(token, instance, other_instance, other_user):
    from channels.db import database_sync_to_async

    from characters.models import Conversation

    foreign = await database_sync_to_async(Conversation.objects.create)(
        instance=other_instance, owner=other_user
    )
    ws = await connect(token)
    await send(ws, {"type": "session.start", "instance": "rosa", "conversation": str(foreign.id)})
    event = await next_event(ws)
    assert event["code"] == "conversation_not_found"
    await ws.disconnect()


async def test_idle_timeout_is_fatal_and_closes(token, settings):
    settings.WS_IDLE_TIMEOUT_SECONDS = 0.4
    ws = await connect(token)
    event = await next_event(ws, timeout=5)
    assert event == event | {"type": "error", "code": "idle_timeout", "fatal": True}
    closed = await next_event(ws, timeout=5)
    assert closed == {"type": "<close>", "code": 4408}


async def test_session_duration_is_capped(token, settings):
    settings.WS_MAX_SESSION_SECONDS = 0.5
    ws = await connect(token)
    for _ in range(4):
        await send(ws, {"type": "ping"})
    events = [await next_event(ws, timeout=5) for _ in range(6)]
    assert {"type": "error", "code": "session_expired", "fatal": True}.items() <= events[4].items()
    assert events[5] == {"type": "<close>", "code": 4408}


async def test_observe_requires_auth_and_ownership(token, other_instance, instance):
    from channels.testing import WebsocketCommunicator

    from realtime.asgi import application
    from tests.edge_helpers import refusal

    anonymous = WebsocketCommunicator(application, "/ws/observe/rosa/")
    assert (await refusal(anonymous))[0] == 4401
    foreign = WebsocketCommunicator(application, f"/ws/observe/nova/?token={token}")
    code, event = await refusal(foreign)
    assert (code, event["code"]) == (4404, "not_found")
    own = WebsocketCommunicator(application, f"/ws/observe/ROSA/?token={token}")
    connected, _ = await own.connect()
    assert connected
    started = await own.receive_json_from()
    assert started["type"] == "observe.started"
    assert started["instance"]["name"] == "rosa"
    await own.disconnect()
