"""Faults during a turn: the database drops (issue 14.15), the model stalls (issue 14.17)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection
from django.test import AsyncClient

from characters.models import Conversation, Message
from conversation.errors import MessageNotStored
from conversation.turns import reply_turn
from tests.fake_openai import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def instance(user, make_instance):
    return make_instance(user, name="Luna")


@pytest.fixture(autouse=True)
def _quick_retries(settings):
    settings.CONVERSATION_STORE_RETRIES = 3
    settings.CONVERSATION_STORE_BACKOFF = 0.05


class DatabaseDown:
    """A database wrapper (Django's `execute_wrapper`) that fails matching writes `times` times
    as a dropped server connection does, on the connection of the thread the ORM runs in."""

    def __init__(self, role: str, times: int) -> None:
        self.role = role
        self.times = times
        self.failed = 0

    def __call__(self, execute, sql, params, many, context):
        if (
            self.failed < self.times
            and sql.startswith('INSERT INTO "characters_message"')
            and self.role in (params or ())
        ):
            self.failed += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    async def __aenter__(self) -> DatabaseDown:
        # In the ORM's worker thread: `connection` is that thread's connection.
        await sync_to_async(lambda: connection.execute_wrappers.append(self))()
        return self

    async def __aexit__(self, *exc) -> None:
        await sync_to_async(lambda: connection.execute_wrappers.remove(self))()


async def test_reply_store_is_retried_through_a_short_outage(fake_openai, user, instance, caplog):
    fake_openai.script("Stored after all.")
    caplog.set_level(logging.WARNING, logger="conversation.retry")
    turn = reply_turn(instance=instance, user=user, text="Hi")
    async with DatabaseDown("assistant", times=2) as down, turn:
        async for _ in turn.deltas():
            pass
    assert down.failed == 2
    assert turn.error is None and turn.reply_message_id is not None
    reply = await Message.objects.aget(pk=turn.reply_message_id)
    assert reply.text == "Stored after all."
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


async def test_a_reply_that_cannot_be_stored_is_reported_not_lost(fake_openai, user, instance):
    fake_openai.script("Nobody will store me.")
    turn = reply_turn(instance=instance, user=user, text="Hi")
    async with DatabaseDown("assistant", times=100) as down, turn:
        async for _ in turn.deltas():
            pass
    assert down.failed == 4  # The first try and 3 retries.
    assert turn.reply_message_id is None
    assert turn.error is not None and turn.error.code == "reply_not_stored"
    assert turn.produced == "Nobody will store me."
    # The user message (stored before the outage) is still there.
    assert await Message.objects.filter(conversation_id=turn.conversation_id).acount() == 1


async def test_http_reports_an_unstored_reply_with_its_text(fake_openai, token, instance):
    fake_openai.script("Lost words.")
    async with DatabaseDown("assistant", times=100):
        response = await AsyncClient().post(
            f"/api/instances/{instance.id}/chat",
            {"text": "Hi"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "reply_not_stored" and body["message_id"] is None
    assert body["text"] == "Lost words." and body["user_message_id"]


async def test_a_user_message_that_cannot_be_stored_never_reaches_the_model(
    fake_openai, user, token, instance
):
    async with DatabaseDown("user", times=100):
        with pytest.raises(MessageNotStored):
            async with reply_turn(instance=instance, user=user, text="Hi"):
                pass
        response = await AsyncClient().post(
            f"/api/instances/{instance.id}/chat",
            {"text": "Hi"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 503 and response.json()["code"] == "message_not_stored"
    assert fake_openai.chat_requests == []
    assert await Conversation.objects.acount() == 0


async def test_postgres_connection_killed_mid_reply(fake_openai, user, instance, caplog):
    """The real fault: PostgreSQL terminates the ORM thread's connection while the model speaks."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL (runs in the PostgreSQL pass)")
    fake_openai.script(Reply("One two three four five.", token_delay=0.1))
    pid = await sync_to_async(lambda: connection.cursor().connection.info.backend_pid)()

    def kill() -> None:
        import psycopg
        from django.conf import settings

        db = settings.DATABASES["default"]
        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            password=db["PASSWORD"],
            dbname="postgres",
            autocommit=True,
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async with reply_turn(instance=instance, user=user, text="Hi") as turn:
        async for delta in turn.deltas():
            if delta.strip() == "One":
                await asyncio.to_thread(kill)
    assert turn.error is None and turn.reply_message_id is not None
    reply = await Message.objects.aget(pk=turn.reply_message_id)
    assert reply.text == "One two three four five."
    retries = [r.getMessage() for r in caplog.records if r.name == "conversation.retry"]
    assert len(retries) == 1 and retries[0].startswith("Storing the reply failed")


async def test_a_stalled_model_ends_the_reply_with_a_typed_error(
    fake_openai, user, instance, settings
):
    settings.LLM_TOKEN_TIMEOUT = 0.3
    fake_openai.script(Reply("Once upon a time", token_delay=5.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with reply_turn(instance=instance, user=user, text="A story?") as turn:
        got = [delta async for delta in turn.deltas()]
    assert loop.time() - started < 4.0  # Not the model's 5 s pause, let alone LLM_TOTAL_TIMEOUT.
    assert got == ["Once"]
    assert turn.error is not None and turn.error.code == "llm_stalled"
    reply = await Message.objects.aget(pk=turn.reply_message_id)
    assert reply.text == "Once" and reply.error.startswith("llm_stalled: ")


async def test_http_answers_a_stall_with_504(fake_openai, token, instance, settings):
    settings.LLM_TOKEN_TIMEOUT = 0.3
    fake_openai.script(Reply("Once upon a time", token_delay=5.0))
    response = await AsyncClient().post(
        f"/api/instances/{instance.id}/chat",
        {"text": "A story?"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "llm_stalled" and body["message_id"]
    reply = await Message.objects.aget(pk=body["message_id"])
    assert reply.text == "Once"


async def test_model_text_no_database_can_keep_is_made_storable(fake_openai, user, instance):
    """A model's NUL or lone surrogate must not cost the reply (PostgreSQL refuses both)."""
    fake_openai.script(Reply("x", tokens=["Hi\x00 there", " \ud83d!"]))
    async with reply_turn(instance=instance, user=user, text="Hi") as turn:
        got = "".join([delta async for delta in turn.deltas()])
    assert got == "Hi\x00 there \ud83d!"
    assert turn.error is None
    reply = await Message.objects.aget(pk=turn.reply_message_id)
    assert reply.text == "Hi there ?!"


async def test_sse_reports_an_unstored_reply_as_its_last_event(fake_openai, token, instance):
    fake_openai.script("Streamed, then lost.")
    async with DatabaseDown("assistant", times=100):
        response = await AsyncClient().post(
            f"/api/instances/{instance.id}/chat?stream=1",
            {"text": "Hi"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    last = raw.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    data = json.loads(last.split("data: ", 1)[1])
    assert data["code"] == "reply_not_stored" and data["message_id"] is None
    assert data["text"] == "Streamed, then lost."


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_instance_deleted_during_the_reply_is_a_404_not_a_storage_failure(
    fake_openai, token, instance, caplog, stream
):
    """It was a 503 `reply_not_stored` "(IntegrityError)", which says "retry later", and an
    ERROR with a traceback; the instance is gone, so the answer is 404 `not_found`."""
    fake_openai.script(Reply("Words nobody will keep.", token_delay=0.15))
    path = f"/api/instances/{instance.id}/chat" + ("?stream=1" if stream else "")

    async def chat():
        response = await AsyncClient().post(
            path,
            {"text": "Hi"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        if not stream:
            return response.status_code, response.json()
        raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
        last = raw.strip().split("\n\n")[-1]
        assert last.startswith("event: error\n"), raw
        return response.status_code, json.loads(last.split("data: ", 1)[1])

    asked = asyncio.ensure_future(chat())
    for _ in range(200):
        if fake_openai.chat_requests:
            break
        await asyncio.sleep(0.02)
    await sync_to_async(instance.delete)()
    status, body = await asked
    assert status == (200 if stream else 404)
    assert body["code"] == "not_found", body
    assert body["message_id"] is None and body["text"] == "Words nobody will keep."
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
