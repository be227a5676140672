"""POST /api/instances/{id}/chat (JSON and SSE), ending conversations, auth and limits."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from characters.models import Conversation, Message
from conversation.background import wait_background
from conversation.turns import conversation_open
from tests.fake_openai import API_KEY, Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def instance(user, make_instance):
    return make_instance(user, name="Luna", memory="The user's name is Ana.")


class client_for:
    """An AsyncClient that sends a user's token (constructor headers are not applied here)."""

    def __init__(self, token: str, **headers: str) -> None:
        self.headers = {"Authorization": f"Bearer {token}", **headers}

    async def post(self, path: str, data=None, **kwargs):
        return await AsyncClient().post(path, data, headers=self.headers, **kwargs)


def parse_sse(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def messages_of(conversation_id) -> list[Message]:
    return await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")
    )


async def test_json_reply_is_stored_with_prompt_and_timings(fake_openai, user, token, instance):
    fake_openai.script("Ahoy Ana! The sea is calm today.")
    response = await client_for(token).post(
        f"/api/instances/{instance.id}/chat",
        {"text": "Hello, how is the sea?"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["text"] == "Ahoy Ana! The sea is calm today."
    assert body["model"] == "gpt-3.5-turbo"
    assert body["timings"]["first_token_ms"] is not None
    assert body["timings"]["total_ms"] >= body["timings"]["first_token_ms"]
    assert body["completion_tokens"] == 7

    sent = fake_openai.chat_requests[-1]
    assert "A cheerful pirate captain" in sent.system
    assert "Luna" in sent.system
    assert "<memory>\nThe user's name is Ana." in sent.system
    assert sent.messages[-1] == {"role": "user", "content": "Hello, how is the sea?"}

    stored = await messages_of(body["conversation_id"])
    assert [(m.role, m.text) for m in stored] == [
        ("user", "Hello, how is the sea?"),
        ("assistant", "Ahoy Ana! The sea is calm today."),
    ]
    assert str(stored[0].id) == body["user_message_id"]
    assert str(stored[1].id) == body["message_id"]
    reply = stored[1]
    assert not reply.interrupted and reply.error == ""
    assert reply.model == "gpt-3.5-turbo" and reply.prompt_tokens and reply.completion_tokens == 7
    assert reply.timings["finish_reason"] == "stop"

    # The same conversation continues with its history in the prompt.
    fake_openai.script("Yes, still calm.")
    again = await client_for(token).post(
        f"/api/instances/{instance.id}/chat",
        {"text": "Still calm?", "conversation": body["conversation_id"]},
        content_type="application/json",
    )
    assert again.status_code == 200
    assert again.json()["conversation_id"] == body["conversation_id"]
    assert [m["content"] for m in fake_openai.chat_requests[-1].messages[1:]] == [
        "Hello, how is the sea?",
        "Ahoy Ana! The sea is calm today.",
        "Still calm?",
    ]


async def test_character_model_name_overrides_the_default(fake_openai, user, token, make_instance):
    instance = await sync_to_async(make_instance)(
        user, name="Nova", model_name="gpt-4o-mini", temperature=0.3, max_tokens=77
    )
    await client_for(token).post(
        f"/api/instances/{instance.id}/chat", {"text": "Hi"}, content_type="application/json"
    )
    sent = fake_openai.chat_requests[-1].json
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o-mini", 0.3, 77)


async def test_sse_streams_deltas_then_done(fake_openai, token, instance):
    fake_openai.script("Ahoy there, matey!")
    response = await client_for(token).post(
        f"/api/instances/{instance.id}/chat?stream=1",
        {"text": "Hi"},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = parse_sse(raw)
    assert [name for name, _ in events] == ["start", "delta", "delta", "delta", "done"]
    assert "".join(data["delta"] for name, data in events if name == "delta") == (
        "Ahoy there, matey!"
    )
    done = events[-1][1]
    assert done["text"] == "Ahoy there, matey!" and done["message_id"]
    assert done["timings"]["first_token_ms"] is not None


async def test_sse_with_accept_header_and_mid_stream_cut(fake_openai, token, instance):
    fake_openai.script(Reply("One two three four five", cut_after=3))
    response = await client_for(token, Accept="text/event-stream").post(
        f"/api/instances/{instance.id}/chat", {"text": "Count"}, content_type="application/json"
    )
    events = parse_sse(b"".join([c async for c in response.streaming_content]).decode())
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "llm_stream_cut"
    stored = await messages_of(events[0][1]["conversation_id"])
    assert stored[-1].role == "assistant"
    assert stored[-1].text == "One two three"
    assert stored[-1].error.startswith("llm_stream_cut: ")


async def test_json_error_keeps_user_message_and_marks_reply(fake_openai, token, instance):
    fake_openai.fail(401, message=f"Incorrect API key provided: {API_KEY}")
    response = await client_for(token).post(
        f"/api/instances/{instance.id}/chat", {"text": "Hello?"}, content_type="application/json"
    )
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "llm_auth"
    assert API_KEY not in response.content.decode()
    stored = await messages_of(body["conversation_id"])
    assert [(m.role, m.text) for m in stored] == [("user", "Hello?"), ("assistant", "")]
    assert stored[1].error.startswith("llm_auth: ") and API_KEY not in stored[1].error


async def test_client_disconnect_stores_partial_reply_as_interrupted(fake_openai, token, instance):
    from realtime.asgi import application

    fake_openai.script(Reply("a b c d e f g h i j k l", token_delay=0.15))
    body = json.dumps({"text": "Tell me a long story"}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/instances/{instance.id}/chat",
        "raw_path": f"/api/instances/{instance.id}/chat".encode(),
        "query_string": b"stream=1",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "http.request", "body": body, "more_body": False})
    deltas = asyncio.Event()
    seen: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.body":
            seen.append(message.get("body", b""))
            if b"".join(seen).count(b"event: delta") >= 3:
                deltas.set()

    task = asyncio.create_task(application(scope, inbox.get, send))
    await asyncio.wait_for(deltas.wait(), 10)
    await inbox.put({"type": "http.disconnect"})
    await asyncio.wait_for(task, 10)

    conversation = await sync_to_async(Conversation.objects.get)(instance_id=instance.id)
    stored = await messages_of(conversation.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    reply = stored[1]
    assert reply.interrupted is True
    assert reply.text.startswith("a b c")
    assert len(reply.text) < len("a b c d e f g h i j k l")


async def test_other_owner_gets_404_and_no_token_401(fake_openai, user, instance, other_token):
    response = await client_for(other_token).post(
        f"/api/instances/{instance.id}/chat", {"text": "Hi"}, content_type="application/json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    anonymous = await AsyncClient().post(
        f"/api/instances/{instance.id}/chat", {"text": "Hi"}, content_type="application/json"
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthorized"
    assert fake_openai.chat_requests == []


async def test_too_long_or_empty_text_is_422(fake_openai, token, instance, settings):
    settings.CHAT_MAX_CHARS = 50
    response = await client_for(token).post(
        f"/api/instances/{instance.id}/chat", {"text": "x" * 51}, content_type="application/json"
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["field"] == "text"
    empty = await client_for(token).post(
        f"/api/instances/{instance.id}/chat", {"text": "  "}, content_type="application/json"
    )
    assert empty.status_code == 422
    assert fake_openai.chat_requests == []
    assert await sync_to_async(Message.objects.count)() == 0


async def test_end_conversation_consolidates_memory(fake_openai, user, token, instance, settings):
    fake_openai.script("Nice to meet you, Ana!")
    first = await client_for(token).post(
        f"/api/instances/{instance.id}/chat",
        {"text": "I have a dog called Rex."},
        content_type="application/json",
    )
    conversation_id = first.json()["conversation_id"]
    fake_openai.script('{"edits": [{"op": "add", "text": "Ana has a dog called Rex."}]}')
    ended = await client_for(token).post(f"/api/conversations/{conversation_id}/end")
    assert ended.status_code == 200
    assert ended.json()["consolidation"] == "scheduled"
    await wait_background()
    await sync_to_async(instance.refresh_from_db)()
    assert instance.memory == "The user's name is Ana.\nAna has a dog called Rex."
    revision = await sync_to_async(instance.memory_revisions.get)()
    assert revision.source == "consolidation" and revision.text == "The user's name is Ana."
    assert "add: Ana has a dog called Rex." in revision.note
    consolidation = fake_openai.chat_requests[-1]
    assert "I have a dog called Rex." in consolidation.messages[-1]["content"]
    # An ended conversation cannot take more turns.
    more = await client_for(token).post(
        f"/api/instances/{instance.id}/chat",
        {"text": "Again", "conversation": conversation_id},
        content_type="application/json",
    )
    assert more.status_code == 409


async def test_end_of_someone_elses_conversation_is_404(fake_openai, user, instance, other_token):
    conversation_id = await conversation_open(instance=instance, user=user)
    response = await client_for(other_token).post(f"/api/conversations/{conversation_id}/end")
    assert response.status_code == 404
