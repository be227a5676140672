"""An instance or conversation deleted while sockets use it (issue 21 item 11): voice sessions and
observers get a fatal `instance_not_found` / `conversation_not_found` and close code 4404, at
once for a deletion in this process, within a re-check otherwise, and at the next turn at the
latest; never `llm_failed` for every turn."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import OperationalError

from characters import services
from characters.models import Conversation
from realtime.asgi import application
from tests.voice_helpers import connect, events_until, next_event, send, start_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _text_only(settings, fake_openai):
    settings.MEMORY_CONSOLIDATION = False


async def _until_close(ws, timeout: float = 10) -> tuple[list[dict], float]:
    """Every event up to the close, and how long they took (s)."""
    started = time.monotonic()
    events = await events_until(ws, "<close>", timeout=timeout)
    return events, time.monotonic() - started


async def _typed_turn(ws, text: str = "Hello there.") -> list[dict]:
    await send(ws, {"type": "input_text", "text": text})
    return await events_until(ws, "response.done", timeout=30)


async def test_deleting_the_instance_closes_its_live_session_at_once(token, instance):
    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    await sync_to_async(services.instance_delete)(instance=instance)
    events, took = await _until_close(ws)
    error = events[-2]
    assert (error["type"], error["code"], error["fatal"]) == ("error", "instance_not_found", True)
    assert events[-1] == {"type": "<close>", "code": 4404}
    assert took < 2, f"{took:.1f} s: the deletion should wake the watch"
    assert not any(e.get("code") == "llm_failed" for e in events)
    await ws.disconnect()


def _deleted_in_another_process(monkeypatch) -> None:
    """Deletions here no longer wake this process's watch, as one in another process would not."""
    monkeypatch.setattr("voice.gone_watch.wake_all", lambda: None)


async def test_an_instance_deleted_elsewhere_is_noticed_at_the_next_turn(
    token, instance, settings, monkeypatch
):
    settings.WS_AUTH_RECHECK_SECONDS = 3600  # No re-check before the turn.
    _deleted_in_another_process(monkeypatch)
    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    await _typed_turn(ws)
    await sync_to_async(services.instance_delete)(instance=instance)
    await send(ws, {"type": "input_text", "text": "Are you still there?"})
    events, _ = await _until_close(ws)
    assert [e.get("code") for e in events if e["type"] == "error"] == ["instance_not_found"]
    assert events[-1] == {"type": "<close>", "code": 4404}
    await ws.disconnect()


async def test_an_instance_deleted_elsewhere_is_noticed_by_the_recheck(
    token, instance, settings, monkeypatch
):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    _deleted_in_another_process(monkeypatch)
    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    await sync_to_async(services.instance_delete)(instance=instance)
    events, took = await _until_close(ws)
    assert (events[-2]["code"], events[-1]["code"]) == ("instance_not_found", 4404)
    assert took < 3
    await ws.disconnect()


async def test_deleting_the_sessions_conversation_closes_it(token, instance, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    done = (await _typed_turn(ws))[-1]
    await sync_to_async(Conversation.objects.filter(pk=done["conversation_id"]).delete)()
    events, _ = await _until_close(ws)
    assert (events[-2]["code"], events[-2]["fatal"]) == ("conversation_not_found", True)
    assert events[-1] == {"type": "<close>", "code": 4404}
    await ws.disconnect()


async def test_a_session_that_ends_leaves_the_watch(token, instance):
    from voice.gone_watch import gone_watch

    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    assert len(gone_watch()) == 1
    await send(ws, {"type": "session.end"})
    await events_until(ws, "<close>")
    await ws.disconnect()
    assert len(gone_watch()) == 0


async def test_other_instances_sessions_go_on(token, instance, nova):
    other = await connect(token)
    await start_session(other, "nova", output_audio={"format": "none"})
    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    await sync_to_async(services.instance_delete)(instance=instance)
    assert (await _until_close(ws))[0][-1]["code"] == 4404
    await send(other, {"type": "ping", "id": "still"})
    assert await next_event(other) == {"type": "pong", "id": "still"}
    await other.disconnect()
    await ws.disconnect()


async def test_observers_of_a_deleted_instance_are_told_and_closed(token, instance):
    ws = WebsocketCommunicator(application, f"/ws/observe/rosa/?token={token}")
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from())["type"] == "observe.started"
    await sync_to_async(services.instance_delete)(instance=instance)
    event = await ws.receive_json_from(timeout=5)
    close = await ws.receive_output(timeout=5)
    assert (event["code"], event["fatal"]) == ("instance_not_found", True)
    assert (close["type"], close["code"]) == ("websocket.close", 4404)
    await ws.disconnect()


async def test_a_database_outage_during_the_check_keeps_the_sessions(token, instance, monkeypatch):
    from voice import gone_watch as module

    def outage(sockets):
        raise OperationalError("connection refused")

    ws = await connect(token)
    await start_session(ws, "rosa", output_audio={"format": "none"})
    monkeypatch.setattr(module, "what_is_gone", outage)
    await module.gone_watch().check()
    await send(ws, {"type": "ping", "id": "alive"})
    assert await next_event(ws) == {"type": "pong", "id": "alive"}
    await ws.disconnect()
