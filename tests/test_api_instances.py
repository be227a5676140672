"""The instance and memory endpoints: CRUD, lookup by name, 409s, revisions and restore."""

from __future__ import annotations

import pytest

from characters.models import CharacterInstance, MemoryRevision

pytestmark = pytest.mark.django_db


def test_create_instance(api, character):
    response = api.post(
        "/api/instances", {"name": "Rosa-2", "character_id": str(character.id), "memory": "M"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Rosa-2"
    assert body["character_name"] == "Doña Rosa"
    assert body["language"] == "es"
    assert body["memory"] == "M"


def test_create_instance_for_someone_elses_character_is_404(api, other_character):
    response = api.post("/api/instances", {"name": "x", "character_id": str(other_character.id)})
    assert response.status_code == 404
    assert not CharacterInstance.objects.filter(name="x").exists()


def test_name_taken_is_409_case_insensitively(api, character, instance):
    response = api.post("/api/instances", {"name": "ROSA", "character_id": str(character.id)})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "name_taken"
    assert body["errors"][0]["field"] == "name"


def test_rename_to_taken_name_is_409(api, user, character, instance):
    from characters import services

    second = services.instance_create(owner=user, character=character, name="second")
    response = api.patch(f"/api/instances/{second.id}", {"name": "Rosa"})
    assert response.status_code == 409
    second.refresh_from_db()
    assert second.name == "second"


def test_rename_keeps_own_name_with_other_case(api, instance):
    response = api.patch(f"/api/instances/{instance.id}", {"name": "ROSA"})
    assert response.status_code == 200
    assert response.json()["name"] == "ROSA"


def test_invalid_name_is_422(api, character):
    response = api.post("/api/instances", {"name": "two words", "character_id": str(character.id)})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"


def test_lookup_by_name_is_case_insensitive(api, instance):
    response = api.get("/api/instances/by-name/ROSA")
    assert response.status_code == 200
    assert response.json()["id"] == str(instance.id)
    assert api.get("/api/instances/by-name/nobody").status_code == 404


def test_lookup_by_name_of_other_owner_is_404(other_api, instance):
    assert other_api.get("/api/instances/by-name/rosa").status_code == 404


def test_list_and_filter_instances(api, user, character, instance, other_instance):
    from characters import services

    spare = services.character_create(owner=user, name="Spare", description="D")
    services.instance_create(owner=user, character=spare, name="spare-1")
    listing = api.get("/api/instances").json()
    assert listing["count"] == 2
    by_character = api.get(f"/api/instances?character_id={character.id}").json()
    assert [item["name"] for item in by_character["items"]] == ["rosa"]
    assert api.get("/api/instances?q=SPA").json()["count"] == 1
    assert api.get("/api/instances?character_id=not-a-uuid").status_code == 422


def test_patch_moves_instance_to_another_own_character(api, user, instance):
    from characters import services

    spare = services.character_create(owner=user, name="Spare", description="D", language="en")
    response = api.patch(f"/api/instances/{instance.id}", {"character_id": str(spare.id)})
    assert response.status_code == 200
    assert response.json()["language"] == "en"


def test_patch_cannot_move_to_other_owners_character(api, instance, other_character):
    response = api.patch(f"/api/instances/{instance.id}", {"character_id": str(other_character.id)})
    assert response.status_code == 404
    instance.refresh_from_db()
    assert instance.character.name == "Doña Rosa"


def test_patch_memory_writes_a_revision(api, instance):
    response = api.patch(f"/api/instances/{instance.id}", {"memory": "Nuevo."})
    assert response.status_code == 200
    assert instance.memory_revisions.get().text == "Vive en Madrid."


def test_delete_instance(api, instance):
    assert api.delete(f"/api/instances/{instance.id}").status_code == 204
    assert not CharacterInstance.objects.filter(pk=instance.pk).exists()


def test_other_owner_cannot_touch_instance(other_api, instance):
    base = f"/api/instances/{instance.id}"
    responses = [
        other_api.get(base),
        other_api.patch(base, {"name": "mine"}),
        other_api.delete(base),
        other_api.get(f"{base}/memory"),
        other_api.put(f"{base}/memory", {"text": "hacked"}),
        other_api.get(f"{base}/memory/revisions"),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    instance.refresh_from_db()
    assert (instance.name, instance.memory) == ("rosa", "Vive en Madrid.")


def test_staff_sees_all_instances(staff_api, instance, other_instance):
    assert staff_api.get("/api/instances").json()["count"] == 2
    assert staff_api.get(f"/api/instances/{instance.id}/memory").status_code == 200


# Memory ---------------------------------------------------------------------------------------


def test_memory_read_and_update(api, instance, user):
    memory = api.get(f"/api/instances/{instance.id}/memory").json()
    assert memory == memory | {"text": "Vive en Madrid.", "chars": 15, "limit": 8000}
    response = api.put(f"/api/instances/{instance.id}/memory", {"text": "Le gusta el té."})
    assert response.status_code == 200
    assert response.json()["text"] == "Le gusta el té."
    revision = instance.memory_revisions.get()
    assert (revision.text, revision.author, revision.source) == (
        "Vive en Madrid.",
        user,
        MemoryRevision.Source.API,
    )


def test_memory_over_limit_is_422_and_loses_nothing(api, instance, settings):
    settings.MEMORY_MAX_CHARS = 30
    response = api.put(f"/api/instances/{instance.id}/memory", {"text": "x" * 31})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "memory"
    assert "30" in body["detail"]
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
    assert instance.memory_revisions.count() == 0


def test_memory_without_text_is_422(api, instance):
    response = api.put(f"/api/instances/{instance.id}/memory", {"note": "nothing"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "text"


def test_revisions_list_and_restore(api, instance):
    base = f"/api/instances/{instance.id}/memory"
    api.put(base, {"text": "Two."})
    api.put(base, {"text": "Three.", "note": "third"})
    revisions = api.get(f"{base}/revisions").json()
    assert revisions["count"] == 2
    assert [item["text"] for item in revisions["items"]] == ["Two.", "Vive en Madrid."]
    assert revisions["items"][0]["note"] == "third"
    assert revisions["items"][0]["author"] == "alice"
    oldest = revisions["items"][1]["id"]
    restored = api.post(f"{base}/revisions/{oldest}/restore")
    assert restored.status_code == 200, restored.content
    assert restored.json()["text"] == "Vive en Madrid."
    after = api.get(f"{base}/revisions").json()
    assert after["count"] == 3
    assert after["items"][0]["text"] == "Three."
    assert after["items"][0]["source"] == "restore"


def test_restore_revision_of_another_instance_is_404(api, user, character, instance):
    from characters import services

    other = services.instance_create(owner=user, character=character, name="other", memory="A")
    services.memory_update(instance=other, text="B")
    foreign = other.memory_revisions.get()
    response = api.post(f"/api/instances/{instance.id}/memory/revisions/{foreign.id}/restore")
    assert response.status_code == 404
    assert response.json()["detail"] == "Memory revision not found."
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
