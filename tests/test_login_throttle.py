"""Failed sign-ins are throttled per username and per IP address (issue 21, item 9), on the
browser's /accounts/login/ and the admin's /admin/login/, through the sync and async stacks.

The issue's example: 40 wrong passwords in 11 s, then the right one worked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import AsyncClient, Client

LIMIT = 3
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def sign_in(client: Client, username: str, password: str, path: str = LOGIN, **headers):
    return client.post(path, {"username": username, "password": password}, headers=headers)


def signed_in(response) -> bool:
    return response.status_code == 302 and "login" not in response["Location"]


def fail(client: Client, username: str, times: int, path: str = LOGIN) -> None:
    """`times` wrong passwords: the form again each time, until the failure that reaches the
    limit, which is answered with the lockout."""
    for attempt in range(1, times + 1):
        answer = sign_in(client, username, "wrong-password", path)
        assert answer.status_code == (429 if attempt >= LIMIT else 200), attempt


@pytest.mark.django_db
def test_right_password_refused_for_the_window_after_the_failures(make_user):
    make_user("alice")
    client = Client(REMOTE_ADDR="10.0.0.1")
    fail(client, "alice", LIMIT)
    locked = sign_in(client, "alice", "alice-pass-123")
    assert locked.status_code == 429
    assert 14 * 60 < int(locked["Retry-After"]) <= 15 * 60
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session
    # From another address too: the username is locked, whoever asks.
    elsewhere = sign_in(Client(REMOTE_ADDR="10.0.0.9"), "alice", "alice-pass-123")
    assert elsewhere.status_code == 429
    # The window passes: the right password works again.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert signed_in(sign_in(client, "alice", "alice-pass-123"))


@pytest.mark.django_db
def test_other_users_elsewhere_are_unaffected(make_user):
    make_user("alice")
    make_user("bob")
    fail(Client(REMOTE_ADDR="10.0.0.1"), "alice", LIMIT + 5)
    assert signed_in(sign_in(Client(REMOTE_ADDR="10.0.0.2"), "bob", "bob-pass-123"))


@pytest.mark.django_db
def test_one_address_guessing_many_usernames_is_locked(make_user):
    make_user("bob")
    attacker = Client(REMOTE_ADDR="10.6.6.6")
    for index in range(LIMIT):
        answer = sign_in(attacker, f"user{index}", "guess")
        assert answer.status_code == (429 if index == LIMIT - 1 else 200)
    assert sign_in(attacker, "bob", "bob-pass-123").status_code == 429
    assert signed_in(sign_in(Client(REMOTE_ADDR="10.0.0.2"), "bob", "bob-pass-123"))


@pytest.mark.django_db
def test_success_before_the_limit_clears_the_failures(make_user):
    make_user("alice")
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(3):
        fail(client, "alice", LIMIT - 1)
        assert signed_in(sign_in(client, "alice", "alice-pass-123"))
        client.logout()


@pytest.mark.django_db
def test_admin_login_is_throttled_too(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="10.0.0.3")
    fail(client, "root", LIMIT, ADMIN_LOGIN)
    locked = sign_in(client, "root", "root-pass-123", ADMIN_LOGIN)
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert client.get("/admin/").status_code == 302  # Still not signed in.
    other = Client(REMOTE_ADDR="10.0.0.4")
    make_user("ops", is_staff=True)
    assert signed_in(sign_in(other, "ops", "ops-pass-123", ADMIN_LOGIN))


@pytest.mark.django_db
def test_json_clients_get_a_json_refusal(make_user):
    make_user("alice")
    client = Client(REMOTE_ADDR="10.0.0.5")
    fail(client, "alice", LIMIT)
    locked = sign_in(client, "alice", "alice-pass-123", Accept="application/json")
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "login_locked" and body["retry_after"] == int(locked["Retry-After"])


@pytest.mark.django_db(transaction=True)
async def test_async_stack_refuses_with_retry_after(make_user):
    """daphne serves through Django's async handler, where Axes' middleware takes its async path."""
    from asgiref.sync import sync_to_async

    await sync_to_async(make_user)("alice")
    client = AsyncClient(REMOTE_ADDR="10.0.0.7")
    for attempt in range(1, LIMIT + 1):
        wrong = await client.post(LOGIN, {"username": "alice", "password": "nope"})
        assert wrong.status_code == (429 if attempt == LIMIT else 200)
    locked = await client.post(LOGIN, {"username": "alice", "password": "alice-pass-123"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert b"Too many failed sign-ins" in locked.content
