"""Conversation and message history (read-only in the API)."""

from __future__ import annotations

import pytest

from characters.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user, instance):
    conversation = Conversation.objects.create(instance=instance, owner=user, channel="ws")
    Message.objects.create(conversation=conversation, role="user", text="Hola")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="¡Hola, cariño!",
        interrupted=True,
        model="gpt-3.5-turbo",
        completion_tokens=5,
        timings={"first_token_ms": 120.5},
    )
    return conversation


def test_list_conversations(api, conversation, instance):
    listing = api.get("/api/conversations").json()
    assert listing["count"] == 1
    item = listing["items"][0]
    assert item["instance_name"] == "rosa"
    assert item["message_count"] == 2
    assert api.get(f"/api/conversations?instance_id={instance.id}").json()["count"] == 1


def test_messages_in_order_with_flags(api, conversation):
    messages = api.get(f"/api/conversations/{conversation.id}/messages").json()
    assert [m["role"] for m in messages["items"]] == ["user", "assistant"]
    reply = messages["items"][1]
    assert reply["interrupted"] is True
    assert reply["timings"] == {"first_token_ms": 120.5}
    assert reply["completion_tokens"] == 5


def test_get_conversation(api, conversation):
    body = api.get(f"/api/conversations/{conversation.id}").json()
    assert body["channel"] == "ws"
    assert body["ended_at"] is None


def test_other_owner_sees_no_conversations(other_api, conversation):
    assert other_api.get("/api/conversations").json()["count"] == 0
    assert other_api.get(f"/api/conversations/{conversation.id}").status_code == 404
    assert other_api.get(f"/api/conversations/{conversation.id}/messages").status_code == 404


def test_staff_reads_all_conversations(staff_api, conversation):
    assert staff_api.get(f"/api/conversations/{conversation.id}/messages").json()["count"] == 2


def test_conversations_require_auth(anon_api, conversation):
    assert anon_api.get("/api/conversations").status_code == 401
