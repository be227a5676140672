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


@pytest.fixture(scope="session", autouse=True)
def _socket_threads_let_go_of_the_database(django_db_setup, django_db_blocker):
    """The WebSocket threads keep their database connections (realtime/sync_threads.py):
    close them before the test database is dropped (PostgreSQL refuses while they are open)."""
    yield
    from realtime.sync_threads import socket_threads

    with django_db_blocker.unblock():
        socket_threads().close_connections()


@pytest.fixture(autouse=True)
def _fresh_user_budgets():
    """Per-user turn and session counts (accounts/usage.py) start empty in every test: user ids
    repeat across tests, and this process's counts would carry over."""
    from accounts import usage

    usage.counts_reset()
    yield
    usage.counts_reset()


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


# Users, tokens and characters: one family. The factories (`make_user`, `make_token`,
# `make_character`, `make_instance`) build as many as a test needs; the plain fixtures below are
# the usual ones, built on them, and a test module overrides one (say `instance`) where it needs
# other data.

LUNA = {
    "name": "Luna the Pirate",
    "description": "A cheerful pirate captain who loves the sea and bad jokes.",
    "language": "en",
}
NOVA = {"name": "Captain Nova", "description": "A calm captain.", "language": "en"}


@pytest.fixture
def make_user(db, django_user_model):
    """`make_user("mallory")`: a user whose password is `<username>-pass-123`."""

    def make(username: str = "alice", **fields):
        return django_user_model.objects.create_user(
            username=username, password=f"{username}-pass-123", **fields
        )

    return make


@pytest.fixture
def make_token(db):
    """`make_token(user)`: the plaintext of a new API token of `user`."""

    def make(user, name: str = "tests") -> str:
        return token_create(user=user, name=name).plaintext

    return make


@pytest.fixture
def make_character(db):
    """`make_character(owner, **fields)`: Luna the Pirate (English), or what `fields` change."""

    def make(owner, **fields):
        return services.character_create(owner=owner, **{**LUNA, **fields})

    return make


@pytest.fixture
def make_instance(make_character):
    """`make_instance(owner, name, memory)`: an instance of `character`, or of a new character
    made of `character_fields` (Luna the Pirate by default)."""

    def make(owner, name: str = "Luna", memory: str = "", *, character=None, **character_fields):
        if character is None:
            character = make_character(owner, **character_fields)
        return services.instance_create(owner=owner, character=character, name=name, memory=memory)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def staff_user(make_user):
    return make_user("staff", is_staff=True)


@pytest.fixture
def token(user, make_token) -> str:
    return make_token(user)


@pytest.fixture
def other_token(other_user, make_token) -> str:
    return make_token(other_user)


@pytest.fixture
def api(token) -> ApiClient:
    return ApiClient(Client(), token)


@pytest.fixture
def other_api(other_token) -> ApiClient:
    return ApiClient(Client(), other_token)


@pytest.fixture
def staff_api(staff_user, make_token) -> ApiClient:
    return ApiClient(Client(), make_token(staff_user))


@pytest.fixture
def anon_api() -> ApiClient:
    return ApiClient(Client(), None)


@pytest.fixture
def character(user, make_character):
    return make_character(
        user,
        name="Doña Rosa",
        description="Una abuela cariñosa de Madrid.",
        language="es",
        voices={"edge": "es-ES-ElviraNeural"},
    )


@pytest.fixture
def instance(user, character, make_instance):
    return make_instance(user, "rosa", "Vive en Madrid.", character=character)


@pytest.fixture
def nova(user, make_character, make_instance):
    """The user's instance `nova` of Captain Nova (English)."""
    return make_instance(user, "nova", character=make_character(user, **NOVA))


@pytest.fixture
def other_character(other_user, make_character):
    return make_character(other_user, **NOVA)


@pytest.fixture
def other_instance(other_user, other_character, make_instance):
    return make_instance(other_user, "nova", character=other_character)


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
async def _close_model_clients():
    """Close the model clients opened on this test's event loop before the loop goes: an
    aiohttp session left open complains ("Unclosed client session") when it is collected.
    Added to every async test (below); not autouse, which would also give the sync tests an
    event loop (and Playwright's sync API refuses to run inside one)."""
    yield
    from conversation.engines import close_clients

    await close_clients()


@pytest.fixture(autouse=True)
def _close_async_test_connections():
    """Async tests reach the ORM through asgiref's shared thread; close its connections after
    each test so PostgreSQL can drop the test database at the end."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


def pytest_collection_modifyitems(items):
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.append("_close_model_clients")
