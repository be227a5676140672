"""Reads: every query a caller may see goes through here, scoped to its owner."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, QuerySet, Subquery

from .models import Character, CharacterInstance, Conversation, MemoryRevision, Message
from .names import name_key


def _scoped(queryset: QuerySet, user: AbstractBaseUser) -> QuerySet:
    """Owners see their own rows; staff see everything."""
    return queryset if user.is_staff else queryset.filter(owner=user)


def character_list(*, user: AbstractBaseUser, language: str = "", q: str = "") -> QuerySet:
    qs = _scoped(Character.objects.all(), user).annotate(instance_count=Count("instances"))
    if language:
        qs = qs.filter(language__iexact=language)
    if q:
        qs = qs.filter(name_key__contains=name_key(q))
    return qs


def character_get(*, user: AbstractBaseUser, character_id) -> Character:
    """Raises Character.DoesNotExist when absent or not the caller's (never reveals which)."""
    return character_list(user=user).get(pk=character_id)


def instance_list(
    *, user: AbstractBaseUser, character_id=None, q: str = ""
) -> QuerySet[CharacterInstance]:
    qs = _scoped(CharacterInstance.objects.select_related("character"), user)
    if character_id:
        qs = qs.filter(character_id=character_id)
    if q:
        qs = qs.filter(name_key__contains=name_key(q))
    return qs


def instance_get(*, user: AbstractBaseUser, instance_id) -> CharacterInstance:
    return instance_list(user=user).get(pk=instance_id)


def instance_get_by_name(*, user: AbstractBaseUser, name: str) -> CharacterInstance:
    return instance_list(user=user).named(name).get()


def instance_find_by_name(*, user: AbstractBaseUser, name: str) -> CharacterInstance | None:
    """The caller's instance of that name (with its character loaded), or None."""
    return instance_list(user=user).named(name).first()


def memory_revision_list(*, instance: CharacterInstance) -> QuerySet[MemoryRevision]:
    return instance.memory_revisions.select_related("author")


def conversation_list(*, user: AbstractBaseUser, instance_id=None) -> QuerySet[Conversation]:
    """Newest first: by last activity, then start, then id (all descending).

    Each row carries `message_count` and `first_user_text` (the title's source). The order is
    explicit: Django ignores `Meta.ordering` in queries with GROUP BY (the count), which left
    the listing in id order.
    """
    first_user_text = (
        Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.USER)
        .order_by("created_at", "id")
        .values("text")[:1]
    )
    qs = (
        _scoped(Conversation.objects.select_related("instance"), user)
        .annotate(message_count=Count("messages"), first_user_text=Subquery(first_user_text))
        .order_by("-last_activity_at", "-started_at", "-id")
    )
    if instance_id:
        qs = qs.filter(instance_id=instance_id)
    return qs


def conversation_get(*, user: AbstractBaseUser, conversation_id) -> Conversation:
    return conversation_list(user=user).get(pk=conversation_id)


def conversation_for_reply(
    *, user: AbstractBaseUser, instance: CharacterInstance, conversation_id
) -> Conversation | None:
    """The caller's own open conversation with `instance`, or None. A conversation is continued
    only by its owner, staff included (staff may read any conversation and observe any
    instance, but replies are stored in the owner's name, so they cannot speak in it)."""
    try:
        return Conversation.objects.filter(
            pk=conversation_id, owner=user, instance=instance, ended_at__isnull=True
        ).first()
    except (ValidationError, ValueError):  # Not a UUID.
        return None


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.all()


def instances_existing(*, instance_ids: Iterable[UUID]) -> set[UUID]:
    """Those of `instance_ids` that still exist (one query; live sockets ask it)."""
    return set(
        CharacterInstance.objects.filter(pk__in=list(instance_ids)).values_list("pk", flat=True)
    )


def conversations_existing(*, conversation_ids: Iterable[UUID]) -> set[UUID]:
    """Those of `conversation_ids` that still exist (one query; live sockets ask it)."""
    return set(
        Conversation.objects.filter(pk__in=list(conversation_ids)).values_list("pk", flat=True)
    )
