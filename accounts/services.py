"""Writes for accounts: creating, checking and revoking API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from realtime.text_safety import unsafe_reason

from .models import ApiToken

TOKEN_PREFIX = "voz_"
# Bound the last_used_at writes: one per token per minute is plenty for auditing.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str = "default") -> IssuedToken:
    """Create a token for `user`; the plaintext is returned once and never stored."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[: len(TOKEN_PREFIX) + 4],
        token_hash=hash_token(plaintext),
    )
    return IssuedToken(token=token, plaintext=plaintext)


def token_authenticate(plaintext: str | None):
    """Return the active user owning `plaintext`, or None."""
    token = token_check(plaintext)
    return token.user if token is not None else None


def token_check(plaintext: str | None) -> ApiToken | None:
    """The active token `plaintext` names (its active user loaded), or None; notes its use."""
    if not plaintext or not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        return None
    if unsafe_reason(plaintext):
        return None  # Cannot be a token we issued, and could not be hashed or stored.
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(plaintext), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
