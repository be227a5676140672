"""`python manage.py seed_demo`: a demo user, token and characters, created once.

The demo credentials (password and token) are written to `var/demo-credentials.json` (mode 0600)
so `./scripts/serve` can print them on every run; the database keeps only hashes.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.services import token_authenticate, token_create
from characters import services
from characters.demo import DEMO_CHARACTERS
from characters.models import Character, CharacterInstance


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "demo-credentials.json"


class Command(BaseCommand):
    help = "Create the demo user, its API token and demo characters/instances (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print the credentials as JSON."
        )

    def handle(self, *args, username: str, as_json: bool, **options) -> None:
        credentials = self._ensure_user_and_token(username)
        created = self._ensure_characters(credentials["username"])
        if as_json:
            self.stdout.write(_dumps(credentials))
            return
        self.stdout.write(f"Demo user: {credentials['username']} / {credentials['password']}")
        self.stdout.write(f"Demo API token: {credentials['token']}")
        if created:
            self.stdout.write(f"Created demo instances: {', '.join(created)}")

    @transaction.atomic
    def _ensure_user_and_token(self, username: str) -> dict:
        User = get_user_model()
        path = credentials_path()
        stored = _load(path)
        user = User.objects.filter(username=username).first()
        valid = (
            user is not None
            and stored.get("username") == username
            and token_authenticate(stored.get("token")) == user
            and user.check_password(stored.get("password", ""))
        )
        if valid:
            return stored
        password = stored.get("password") or secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_user(username=username, password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        token = token_create(user=user, name="demo").plaintext
        credentials = {"username": username, "password": password, "token": token}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dumps(credentials), encoding="utf-8")
        path.chmod(0o600)
        return credentials

    def _ensure_characters(self, username: str) -> list[str]:
        owner = get_user_model().objects.get(username=username)
        created = []
        for spec in DEMO_CHARACTERS:
            fields = spec["character"]
            character = Character.objects.filter(owner=owner, name=fields["name"]).first()
            if character is None:
                character = services.character_create(owner=owner, **fields)
            for instance in spec["instances"]:
                if not CharacterInstance.objects.named(instance["name"]).exists():
                    services.instance_create(owner=owner, character=character, **instance)
                    created.append(instance["name"])
        return created


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
