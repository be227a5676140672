"""Admin: pages render, memory edits write revisions, revisions restore, conversations read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from characters.models import Conversation, MemoryRevision, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(django_user_model) -> Client:
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    client.force_login(admin)
    return client


def test_admin_pages_render(admin_client_, character, instance, user):
    conversation = Conversation.objects.create(instance=instance, owner=user)
    Message.objects.create(conversation=conversation, role="user", text="Hola abuela")
    pages = [
        "/admin/characters/character/",
        f"/admin/characters/character/{character.pk}/change/",
        "/admin/characters/characterinstance/?q=rosa",
        f"/admin/characters/characterinstance/{instance.pk}/change/",
        "/admin/characters/memoryrevision/",
        "/admin/characters/conversation/",
        f"/admin/characters/conversation/{conversation.pk}/change/",
        "/admin/accounts/apitoken/",
    ]
    for page in pages:
        response = admin_client_.get(page)
        assert response.status_code == 200, page
    inline = admin_client_.get(f"/admin/characters/character/{character.pk}/change/")
    assert b"rosa" in inline.content
    conversation_page = admin_client_.get(
        f"/admin/characters/conversation/{conversation.pk}/change/"
    )
    assert b"Hola abuela" in conversation_page.content
    assert b'name="_save"' not in conversation_page.content


def test_admin_memory_edit_writes_revision(admin_client_, instance, character, user):
    response = admin_client_.post(
        f"/admin/characters/characterinstance/{instance.pk}/change/",
        {
            "owner": user.pk,
            "character": character.pk,
            "name": "rosa",
            "memory": "Edited in admin.",
            "memory_revisions-TOTAL_FORMS": "0",
            "memory_revisions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    instance.refresh_from_db()
    assert instance.memory == "Edited in admin."
    revision = instance.memory_revisions.get()
    assert revision.text == "Vive en Madrid."
    assert revision.source == MemoryRevision.Source.ADMIN


def test_admin_restore_action(admin_client_, instance):
    from characters import services

    services.memory_update(instance=instance, text="Changed.")
    revision = instance.memory_revisions.get()
    response = admin_client_.post(
        "/admin/characters/memoryrevision/",
        {"action": "restore", "_selected_action": [revision.pk]},
    )
    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."


def test_admin_refuses_token_creation(admin_client_):
    assert admin_client_.get("/admin/accounts/apitoken/add/").status_code == 403
