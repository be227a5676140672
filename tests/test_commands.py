"""Management commands: create_token and seed_demo."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import ApiToken
from characters.models import Character, CharacterInstance

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_create_token_prints_a_working_token_stored_hashed(user):
    plaintext = run("create_token", "alice", "--name", "laptop")
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop"
    assert plaintext.startswith("voz_")
    assert plaintext not in token.token_hash
    assert token.token_hash != plaintext
    response = Client(headers={"Authorization": f"Bearer {plaintext}"}).get("/api/characters")
    assert response.status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_create_token_for_unknown_user_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("create_token", "ghost")


def test_create_token_can_create_the_user(django_user_model):
    plaintext = run("create_token", "kiosk", "--create-user")
    assert django_user_model.objects.get(username="kiosk").api_tokens.count() == 1
    assert plaintext.startswith("voz_")


def test_seed_demo_is_idempotent_and_credentials_work(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = json.loads(run("seed_demo", "--json"))
    second = json.loads(run("seed_demo", "--json"))
    assert first == second
    assert Character.objects.filter(owner__username="demo").count() == 2
    assert set(Character.objects.values_list("language", flat=True)) == {"es", "en"}
    assert CharacterInstance.objects.count() == 3
    assert ApiToken.objects.count() == 1
    client = Client(headers={"Authorization": f"Bearer {first['token']}"})
    listing = client.get("/api/characters").json()
    assert {item["name"] for item in listing["items"]} == {"Doña Rosa", "Captain Nova"}
    assert Client().login(username="demo", password=first["password"])
    assert oct((tmp_path / "demo-credentials.json").stat().st_mode & 0o777) == "0o600"


def test_seed_demo_reissues_credentials_when_file_is_lost(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = json.loads(run("seed_demo", "--json"))
    (tmp_path / "demo-credentials.json").unlink()
    second = json.loads(run("seed_demo", "--json"))
    assert second["token"] != first["token"]
    assert (
        Client(headers={"Authorization": f"Bearer {second['token']}"})
        .get("/api/characters")
        .status_code
        == 200
    )
    assert CharacterInstance.objects.count() == 3
