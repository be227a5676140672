"""The characters endpoints: CRUD, validation, auth, owner scoping and staff access."""

from __future__ import annotations

import pytest
from django.test import Client

from characters.models import Character

pytestmark = pytest.mark.django_db

NEW = {"name": "Captain Nova", "description": "A calm captain.", "language": "en"}


def test_create_and_get_character(api):
    response = api.post("/api/characters", NEW | {"voices": {"edge": "en-US-AriaNeural"}})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Captain Nova"
    assert body["owner"] == "alice"
    assert body["voices"] == {"edge": "en-US-AriaNeural"}
    assert body["instance_count"] == 0
    fetched = api.get(f"/api/characters/{body['id']}").json()
    assert fetched["description"] == "A calm captain."


def test_list_paginates_and_filters(api, user):
    for index in range(3):
        api.post("/api/characters", NEW | {"name": f"C{index}", "language": "es"})
    api.post("/api/characters", NEW)
    page = api.get("/api/characters?limit=2&offset=0").json()
    assert page["count"] == 4
    assert len(page["items"]) == 2
    spanish = api.get("/api/characters?language=es").json()
    assert spanish["count"] == 3
    found = api.get("/api/characters?q=nova").json()
    assert [item["name"] for item in found["items"]] == ["Captain Nova"]


def test_patch_updates_only_sent_fields(api, character):
    response = api.patch(f"/api/characters/{character.id}", {"temperature": 0.3})
    assert response.status_code == 200, response.content
    assert response.json()["temperature"] == 0.3
    assert response.json()["name"] == "Doña Rosa"


def test_patch_can_clear_optional_fields(api, character):
    api.patch(f"/api/characters/{character.id}", {"temperature": 0.3})
    response = api.patch(f"/api/characters/{character.id}", {"temperature": None})
    assert response.json()["temperature"] is None


def test_delete_character(api, character):
    assert api.delete(f"/api/characters/{character.id}").status_code == 204
    assert not Character.objects.filter(pk=character.pk).exists()


def test_delete_character_with_instances_conflicts(api, character, instance):
    response = api.delete(f"/api/characters/{character.id}")
    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert Character.objects.filter(pk=character.pk).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"description": "no name"}, "name"),
        (NEW | {"name": ""}, "name"),
        (NEW | {"temperature": 3}, "temperature"),
        (NEW | {"max_tokens": 0}, "max_tokens"),
        (NEW | {"language": "Spanish"}, "language"),
        (NEW | {"voices": {"edge": 1}}, "voices.edge"),
    ],
)
def test_create_validation_names_the_field(api, payload, field):
    response = api.post("/api/characters", payload)
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in [error["field"] for error in body["errors"]]
    assert Character.objects.count() == 0


def test_description_limit_from_settings(api, settings):
    settings.DESCRIPTION_MAX_CHARS = 5
    response = api.post("/api/characters", NEW)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "description"


def test_malformed_json_is_a_clear_400(api):
    response = api.post("/api/characters", "{not json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_missing_token_is_401(anon_api):
    response = anon_api.get("/api/characters")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in response.json()["detail"]


def test_bad_token_is_401(character):
    for token in ["voz_wrong", "not-even-a-voz-token", "voz_" + "x" * 300]:
        client = Client(headers={"Authorization": f"Bearer {token}"})
        assert client.get("/api/characters").status_code == 401


def test_revoked_token_is_401(api, user):
    from accounts.services import token_revoke

    assert api.get("/api/characters").status_code == 200
    token_revoke(token=user.api_tokens.get())
    assert api.get("/api/characters").status_code == 401


def test_inactive_user_token_is_401(api, user):
    user.is_active = False
    user.save()
    assert api.get("/api/characters").status_code == 401


def test_other_owner_gets_404_never_403(other_api, character):
    path = f"/api/characters/{character.id}"
    for response in [
        other_api.get(path),
        other_api.patch(path, {"name": "Stolen"}),
        other_api.delete(path),
    ]:
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert other_api.get("/api/characters").json()["count"] == 0
    character.refresh_from_db()
    assert character.name == "Doña Rosa"


def test_unknown_id_is_404(api):
    response = api.get("/api/characters/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["detail"] == "Character not found."


def test_staff_sees_and_changes_everything(staff_api, character, other_character):
    listing = staff_api.get("/api/characters").json()
    assert {item["name"] for item in listing["items"]} == {"Doña Rosa", "Captain Nova"}
    response = staff_api.patch(f"/api/characters/{character.id}", {"greeting": "Hola"})
    assert response.status_code == 200
    assert response.json()["owner"] == "alice"


def test_session_login_works_and_needs_csrf(user, character):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="alice", password="alice-pass-123")
    listing = client.get("/api/characters")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    # Unsafe methods with a session need the CSRF token (a cross-site form cannot forge them).
    refused = client.post("/api/characters", NEW, content_type="application/json")
    assert refused.status_code in (401, 403)
    client.get("/accounts/login/")
    csrf = client.cookies["csrftoken"].value
    created = client.post(
        "/api/characters", NEW, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert created.status_code == 201, created.content


def test_openapi_schema_and_docs_are_public():
    client = Client()
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/characters" in paths
    assert "/api/instances/{instance_id}/memory/revisions/{revision_id}/restore" in paths
    assert client.get("/api/docs").status_code == 200


def test_rate_limit_per_caller_is_a_clear_429(api, other_api, settings):
    settings.API_RATE_LIMIT = "3/min"
    assert [api.get("/api/characters").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/api/characters")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert other_api.get("/api/characters").status_code == 200  # Another caller is unaffected.
