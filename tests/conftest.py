"""Shared fixtures: users with API tokens, characters and instances, the fake OpenAI server."""

from __future__ import annotations

import pytest

from tests.fake_openai import fake_openai  # noqa: F401  (fixture)


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
