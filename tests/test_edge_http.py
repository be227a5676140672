"""HTTP, admin and command doors (issue 14 items 1, 4, 7, 14). These run on SQLite and, in
./scripts/test's second pass, on PostgreSQL (which refuses NUL with an error, not silently)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from characters import selectors
from characters.models import Character, CharacterInstance
from tests.servers import sqlite_file_env

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


# 1. NUL and lone surrogates: 422 on every endpoint, nothing stored --------------------------


def _assert_refused(response, field: str) -> None:
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "raw",
    ['"Ro\\u0000sa"', '"Ro\\ud83dsa"'],
    ids=["nul", "lone-surrogate"],
)
def test_unstorable_text_is_422_on_every_write(api, character, instance, raw):
    body = lambda field: f'{{"{field}": {raw}}}'  # noqa: E731
    writes = [
        ("post", "/api/characters", f'{{"name": {raw}, "description": "x"}}', "name"),
        ("patch", f"/api/characters/{character.id}", body("greeting"), "greeting"),
        ("patch", f"/api/instances/{instance.id}", body("memory"), "memory"),
        ("put", f"/api/instances/{instance.id}/memory", body("text"), "text"),
        ("post", f"/api/instances/{instance.id}/chat", body("text"), "text"),
        ("post", "/api/tts", body("text"), "text"),
        (
            "patch",
            f"/api/characters/{character.id}",
            f'{{"voices": {{"edge": {raw}}}}}',
            "voices.edge",
        ),
    ]
    for method, path, payload, field in writes:
        _assert_refused(api.request(method, path, payload), field)
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
    assert Character.objects.count() == 1


def test_unstorable_text_in_path_and_query_is_422(api, instance):
    _assert_refused(api.get("/api/instances/by-name/ro%00sa"), "path")
    _assert_refused(api.get("/api/characters?q=a%00b"), "q")
    assert api.get("/api/instances/by-name/rosa").status_code == 200


def test_deeply_nested_json_body_is_422(api, instance):
    payload = '{"text": "hi", "note": ' + "[" * 1000 + "]" * 1000 + "}"
    response = api.put(f"/api/instances/{instance.id}/memory", payload)
    assert response.status_code == 422
    assert "nests deeper" in response.json()["detail"]


def test_admin_refuses_nul_in_json_voices(client, staff_user, character):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    response = client.post(
        f"/admin/characters/character/{character.id}/change/",
        {
            "name": character.name,
            "description": character.description,
            "language": "es",
            "greeting": "",
            "voices": '{"edge": "a\\u0000b"}',
            "model_name": "",
            "instances-TOTAL_FORMS": "0",
            "instances-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # The form again, with the error; not a 500.
    assert "NUL" in response.content.decode()
    character.refresh_from_db()
    assert character.voices == {"edge": "es-ES-ElviraNeural"}


def test_create_token_refuses_undecodable_username(user):
    with pytest.raises(CommandError, match="valid Unicode"):
        call_command("create_token", "ali\udcffce")


# 4. Instance names: one name whatever the case, for every letter, on both databases ---------


def test_names_differing_in_case_of_accented_letters_are_one_name(api, character):
    first = api.post("/api/instances", {"name": "Ángel-r1", "character_id": str(character.id)})
    assert first.status_code == 201
    second = api.post("/api/instances", {"name": "ángel-r1", "character_id": str(character.id)})
    assert second.status_code == 409
    assert second.json()["code"] == "name_taken"


def test_lookup_by_name_folds_every_letter(api, user, character):
    api.post("/api/instances", {"name": "Óscar-r3", "character_id": str(character.id)})
    found = api.get("/api/instances/by-name/óscar-r3")
    assert found.status_code == 200
    assert found.json()["name"] == "Óscar-r3"
    assert selectors.instance_find_by_name(user=user, name="ÓSCAR-R3") is not None
    assert api.get("/api/instances?q=ÓSC").json()["count"] == 1


def test_unicode_forms_and_full_case_folding(user, character):
    from characters import services

    services.instance_create(owner=user, character=character, name="Stra\u00dfe")
    decomposed = "O\u0301scar"  # O + combining acute: the same letters as "Óscar".
    services.instance_create(owner=user, character=character, name=decomposed)
    with pytest.raises(services.NameTaken):
        services.instance_create(owner=user, character=character, name="STRASSE")
    with pytest.raises(services.NameTaken):
        services.instance_create(owner=user, character=character, name="óscar")
    assert CharacterInstance.objects.get(name_key="óscar").name == "Óscar"


def test_the_database_itself_refuses_a_duplicate_key(user, character):
    from django.db import IntegrityError, transaction

    CharacterInstance.objects.create(owner=user, character=character, name="Ñandú")
    with pytest.raises(IntegrityError), transaction.atomic():
        CharacterInstance.objects.create(owner=user, character=character, name="ñANDÚ")


# 7. Found by schemathesis ---------------------------------------------------------------------


def test_patch_with_null_resets_fields_that_have_a_default(api, character):
    response = api.patch(
        f"/api/characters/{character.id}",
        {"greeting": None, "model_name": None, "voices": None, "temperature": None},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["greeting"], body["model_name"], body["voices"]) == ("", "", {})


@pytest.mark.parametrize("field", ["name", "description", "language"])
def test_patch_with_null_required_field_is_422(api, character, field):
    response = api.patch(f"/api/characters/{character.id}", {field: None})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_huge_offsets_and_ids_are_422_not_500(api, instance):
    assert api.get(f"/api/characters?offset={2**63}").status_code == 422
    assert api.get(f"/api/characters?offset={2**53 - 1}").json()["items"] == []
    restore = f"/api/instances/{instance.id}/memory/revisions/{2**63}/restore"
    assert api.post(restore).status_code == 422


def test_unexpected_errors_are_json(api, monkeypatch):
    from characters import selectors as character_selectors

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(character_selectors, "character_list", broken)
    response = api.get("/api/characters")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


def test_a_path_under_api_that_is_no_endpoint_is_a_json_404(api, instance):
    """Django's HTML page answered these (docs/api.md: every error is JSON)."""
    from django.test import Client

    anonymous = Client(enforce_csrf_checks=True)  # A POST must not meet a CSRF page either.
    for response in (
        api.get("/api/nothing"),
        api.get("/api/"),
        api.get("/api/characters/"),
        api.get("/api/instances/by-name/a/b"),  # a name holding "/" ("..%2F..%2Fetc")
        api.post(f"/api/instances/{instance.id}/chat/extra"),
        anonymous.post("/api/nothing", data="{}", content_type="application/json"),
        anonymous.put("/api/nothing"),
    ):
        assert response.status_code == 404, response.content
        assert response["Content-Type"].startswith("application/json"), response.content
        assert response.json()["code"] == "not_found"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite locking")
@pytest.mark.django_db(transaction=True)
def test_concurrent_memory_writes_on_a_sqlite_file_all_succeed(tmp_path):
    """100 concurrent writers on a file database (the test database is in memory, so this runs
    in a subprocess with the project's real SQLite settings)."""
    env = sqlite_file_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tests.concurrent_memory_writes", "100"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "100 ok, 0 failed, 101 revisions"


# 14. Production settings from the environment ---------------------------------------------


def _production_env() -> dict[str, str]:
    """The production configuration documented in docs/configuration.md (its ```env block)."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```env\n(.*?)```", text, re.S)
    assert block, "docs/configuration.md documents a production configuration"
    pairs = [line.split("=", 1) for line in block[1].splitlines() if "=" in line]
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "VOZ_DATA_DIR": str(tmp_path),
        "VOZ_ENV_FILE": str(tmp_path / ".env"),
        **_production_env(),
    }
    env["SECRET_KEY"] = "k" * 20 + "-production-secret-from-the-environment-0123456789"
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/characters").status_code == 301


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite let such names in")
@pytest.mark.django_db(transaction=True)
def test_migration_keys_existing_names_and_renames_collisions(django_user_model):
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("characters", "0001_initial")])
    old = executor.loader.project_state([("characters", "0001_initial")]).apps
    owner = old.get_model("auth", "User").objects.create(username="legacy")
    character = old.get_model("characters", "Character").objects.create(
        owner_id=owner.pk, name="C", description="d"
    )
    Instance = old.get_model("characters", "CharacterInstance")
    for name in ("Ángel-r1", "ángel-r1"):  # SQLite's LOWER() let both in.
        Instance.objects.create(owner_id=owner.pk, character_id=character.pk, name=name)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    names = sorted(CharacterInstance.objects.values_list("name", "name_key"))
    assert names == [("Ángel-r1", "ángel-r1"), ("ángel-r1-2", "ángel-r1-2")]


def test_staff_cannot_continue_another_owners_conversation_over_http(
    staff_api, user, instance, fake_openai
):
    from characters.models import Conversation

    conversation = Conversation.objects.create(instance=instance, owner=user)
    response = staff_api.post(
        f"/api/instances/{instance.id}/chat", {"text": "Hola", "conversation": str(conversation.id)}
    )
    assert response.status_code == 404
    assert conversation.messages.count() == 0
