"""Conversation and message history (read-only in the API)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from characters.models import Conversation, Message
from characters.schemas import conversation_title

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


def _conversation_at(instance, user, *, pk: str, minutes_ago: int, first: str = "") -> Conversation:
    when = timezone.now() - timedelta(minutes=minutes_ago)
    conversation = Conversation.objects.create(id=uuid.UUID(pk), instance=instance, owner=user)
    Conversation.objects.filter(pk=pk).update(started_at=when, last_activity_at=when)
    if first:
        Message.objects.create(conversation=conversation, role="assistant", text="Greeting first")
        Message.objects.create(conversation=conversation, role="user", text=first)
        Message.objects.create(conversation=conversation, role="user", text="A later message")
    return conversation


def test_list_is_newest_first_not_in_id_order(api, instance, user):
    # The ids run the opposite way to time: the newest conversation has the smallest id.
    newest = _conversation_at(instance, user, pk=f"{1:032x}", minutes_ago=1, first="Newest")
    middle = _conversation_at(instance, user, pk=f"{2:032x}", minutes_ago=5, first="Middle")
    oldest = _conversation_at(instance, user, pk=f"{3:032x}", minutes_ago=9, first="Oldest")
    items = api.get(f"/api/conversations?instance_id={instance.id}").json()["items"]
    assert [item["id"] for item in items] == [str(c.pk) for c in (newest, middle, oldest)]
    assert [item["title"] for item in items] == ["Newest", "Middle", "Oldest"]
    # Last activity counts, not the start: a turn in the oldest one moves it to the top.
    Conversation.objects.filter(pk=oldest.pk).update(last_activity_at=timezone.now())
    items = api.get("/api/conversations").json()["items"]
    assert items[0]["id"] == str(oldest.pk)


def test_list_ties_are_broken_by_id_descending(api, instance, user):
    same = timezone.now() - timedelta(minutes=3)
    for n in (1, 3, 2):
        Conversation.objects.create(id=uuid.UUID(int=n), instance=instance, owner=user)
    Conversation.objects.update(started_at=same, last_activity_at=same)
    items = api.get("/api/conversations").json()["items"]
    assert [item["id"][-1] for item in items] == ["3", "2", "1"]


def test_title_is_the_first_user_message_shortened(api, instance, user):
    long = "Tell me everything you know about the starship Lumen and its robot first officer Bolt"
    _conversation_at(instance, user, pk=f"{7:032x}", minutes_ago=1, first=long)
    _conversation_at(instance, user, pk=f"{8:032x}", minutes_ago=2)
    titles = [item["title"] for item in api.get("/api/conversations").json()["items"]]
    assert titles[1] == ""  # no user message yet
    assert titles[0].endswith("…") and len(titles[0]) <= 60
    assert long.startswith(titles[0][:-1])
    assert conversation_title("  Hola,\n  ¿qué tal?  ") == "Hola, ¿qué tal?"


def test_reopen_a_past_conversation(api, other_api, staff_api, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(ended_at=timezone.now())
    assert other_api.post(f"/api/conversations/{conversation.id}/reopen").status_code == 404
    assert staff_api.post(f"/api/conversations/{conversation.id}/reopen").status_code == 404
    response = api.post(f"/api/conversations/{conversation.id}/reopen")
    assert response.status_code == 200
    assert response.json()["ended_at"] is None
    conversation.refresh_from_db()
    assert conversation.ended_at is None
    assert timezone.now() - conversation.last_activity_at < timedelta(minutes=1)
