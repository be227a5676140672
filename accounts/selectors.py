"""Reads for accounts: is a connection's credential still good (revocation, deactivation, logout)."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from .models import ApiToken


def tokens_still_active(*, token_ids: list[int]) -> set[int]:
    """Those of `token_ids` not revoked whose user is still active (one query)."""
    if not token_ids:
        return set()
    return set(
        ApiToken.objects.filter(
            pk__in=token_ids, revoked_at__isnull=True, user__is_active=True
        ).values_list("pk", flat=True)
    )


def session_still_signed_in(*, session_key: str | None, user_id) -> bool:
    """The session still exists, still names this user (no logout, no other login), the user is
    active and the password did not change since (Django's session auth hash)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id) or not data.get(BACKEND_SESSION_KEY):
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return constant_time_compare(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())
