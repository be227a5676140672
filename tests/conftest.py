"""Shared fixtures: users, tokens, a JSON API client, characters, the fake OpenAI server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.services import token_create
from characters import services
from tests.fake_openai import fake_openai  # noqa: F401  (fixture)
from tests.speech_samples import (  # noqa: F401  (fixtures; edge-tts kept offline everywhere)
    _offline_edge_and_fresh_breakers,
    english_16k,
    english_speech,
    english_text,
    english_wav,
)


@dataclass
class ApiClient:
    """A Django test client that sends `Authorization: Bearer <token>` and JSON bodies."""

    client: Client
    token: str | None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body: Any = None, **extra):
        kwargs: dict[str, Any] = {"headers": {**self._headers(), **extra.pop("headers", {})}}
        if body is not None:
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(path, **kwargs, **extra)

    def get(self, path: str, **extra):
        return self.request("get", path, **extra)

    def post(self, path: str, body: Any = None, **extra):
        return self.request("post", path, body, **extra)

    def put(self, path: str, body: Any = None, **extra):
        return self.request("put", path, body, **extra)

    def patch(self, path: str, body: Any = None, **extra):
        return self.request("patch", path, body, **extra)

    def delete(self, path: str, **extra):
        return self.request("delete", path, **extra)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True
    )


@pytest.fixture
def token(user) -> str:
    return token_create(user=user, name="tests").plaintext


@pytest.fixture
def api(token) -> ApiClient:
    return ApiClient(Client(), token)


@pytest.fixture
def other_api(other_user) -> ApiClient:
    return ApiClient(Client(), token_create(user=other_user).plaintext)


@pytest.fixture
def staff_api(staff_user) -> ApiClient:
    return ApiClient(Client(), token_create(user=staff_user).plaintext)


@pytest.fixture
def anon_api() -> ApiClient:
    return ApiClient(Client(), None)


@pytest.fixture
def character(user):
    return services.character_create(
        owner=user,
        name="Doña Rosa",
        description="Una abuela cariñosa de Madrid.",
        language="es",
        voices={"edge": "es-ES-ElviraNeural"},
    )


@pytest.fixture
def instance(user, character):
    return services.instance_create(
        owner=user, character=character, name="rosa", memory="Vive en Madrid."
    )


@pytest.fixture
def other_character(other_user):
    return services.character_create(
        owner=other_user, name="Captain Nova", description="A calm captain.", language="en"
    )


@pytest.fixture
def other_instance(other_user, other_character):
    return services.instance_create(owner=other_user, character=other_character, name="nova")


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counts live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 with production rounds costs ~0.3 s per user; tests need no such strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_background_sweeps(settings):
    """Tests run the idle sweep explicitly; no periodic task outlives a test's event loop."""
    settings.MEMORY_SWEEP_SECONDS = 0


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    from accounts.services import token_create

    def make(username: str = "alice"):
        user = get_user_model().objects.create_user(username=username, password="pw-123456789")
        user.api_token = token_create(user=user).plaintext
        return user

    return make


@pytest.fixture
def make_instance(db):
    from characters import services

    def make(owner, name: str = "Luna", memory: str = "", **character_fields):
        fields = {
            "name": "Luna the Pirate",
            "description": "A cheerful pirate captain who loves the sea and bad jokes.",
            "language": "en",
        }
        fields.update(character_fields)
        character = services.character_create(owner=owner, **fields)
        return services.instance_create(owner=owner, character=character, name=name, memory=memory)

    return make


@pytest.fixture(autouse=True)
def _close_async_test_connections():
    """Async tests reach the ORM through asgiref's shared thread; close its connections after
    each test so PostgreSQL can drop the test database at the end."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
