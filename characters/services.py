"""Writes for characters, instances and memory. Views, admin and consumers call these."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from .models import Character, CharacterInstance, Conversation, MemoryRevision
from .names import normalize_name

CHARACTER_FIELDS = {
    "name",
    "description",
    "language",
    "greeting",
    "voices",
    "model_name",
    "temperature",
    "max_tokens",
}


class NameTaken(Exception):
    """An instance name is already in use (unique ignoring case and Unicode form: names.py)."""


class InUse(Exception):
    """The object is still referenced and cannot be deleted."""


def character_create(*, owner: AbstractBaseUser, **fields: Any) -> Character:
    character = Character(owner=owner, **_only(fields, CHARACTER_FIELDS))
    character.full_clean()
    character.save()
    return character


def character_update(*, character: Character, **fields: Any) -> Character:
    for name, value in _only(fields, CHARACTER_FIELDS).items():
        setattr(character, name, value)
    character.full_clean()
    character.save()
    return character


def character_delete(*, character: Character) -> None:
    try:
        character.delete()
    except ProtectedError as exc:
        count = character.instances.count()
        raise InUse(f"Character has {count} instance(s); delete or move them first.") from exc


def _name_is_taken(name: str, exclude_pk=None) -> bool:
    qs = CharacterInstance.objects.named(name)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


def instance_create(
    *, owner: AbstractBaseUser, character: Character, name: str, memory: str = ""
) -> CharacterInstance:
    name = normalize_name(name)
    instance = CharacterInstance(owner=owner, character=character, name=name, memory=memory)
    instance.full_clean(validate_constraints=False)
    if _name_is_taken(name):
        raise NameTaken(f"The instance name {name!r} is already taken.")
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:  # A concurrent create won the race.
        raise NameTaken(f"The instance name {name!r} is already taken.") from exc
    return instance


def instance_update(
    *,
    instance: CharacterInstance,
    author: AbstractBaseUser | None = None,
    name: str | None = None,
    character: Character | None = None,
    memory: str | None = None,
    source: str = MemoryRevision.Source.API,
) -> CharacterInstance:
    if name is not None:
        name = normalize_name(name)
        if _name_is_taken(name, exclude_pk=instance.pk):
            raise NameTaken(f"The instance name {name!r} is already taken.")
        instance.name = name
    if character is not None:
        instance.character = character
    if memory is not None and memory != instance.memory:
        return _save_with_memory(instance, memory, author=author, source=source)
    instance.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise NameTaken(f"The instance name {instance.name!r} is already taken.") from exc
    return instance


def instance_delete(*, instance: CharacterInstance) -> None:
    instance.delete()


def memory_update(
    *,
    instance: CharacterInstance,
    text: str,
    author: AbstractBaseUser | None = None,
    source: str = MemoryRevision.Source.API,
    note: str = "",
) -> CharacterInstance:
    """Replace an instance's memory, keeping the previous text as a revision."""
    if text == instance.memory:
        return instance
    return _save_with_memory(instance, text, author=author, source=source, note=note)


def memory_restore(
    *, instance: CharacterInstance, revision: MemoryRevision, author: AbstractBaseUser | None
) -> CharacterInstance:
    """Bring back a revision's text; the memory it replaces becomes a revision itself."""
    return memory_update(
        instance=instance,
        text=revision.text,
        author=author,
        source=MemoryRevision.Source.RESTORE,
        note=f"Restored revision {revision.pk}",
    )


def conversation_reopen(*, conversation: Conversation) -> Conversation:
    """Continue a past conversation: open again, active now (its memory consolidation runs
    again after it ends, for the new turns)."""
    now = timezone.now()
    Conversation.objects.filter(pk=conversation.pk).update(ended_at=None, last_activity_at=now)
    conversation.ended_at, conversation.last_activity_at = None, now
    return conversation


def _save_with_memory(
    instance: CharacterInstance,
    text: str,
    *,
    author: AbstractBaseUser | None,
    source: str,
    note: str = "",
) -> CharacterInstance:
    with transaction.atomic():
        # Lock the row so two concurrent updates each record the text they replaced.
        previous = (
            CharacterInstance.objects.select_for_update().only("memory").get(pk=instance.pk).memory
        )
        instance.memory = text
        instance.full_clean(validate_constraints=False)
        MemoryRevision.objects.create(
            instance=instance, text=previous, source=source, author=author, note=note[:200]
        )
        instance.save()
    return instance


def _only(fields: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"Unknown fields: {', '.join(sorted(unknown))}")
    return fields
