"""Models and services: validation bounds, case-insensitive names, memory revisions."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from characters import services
from characters.models import CharacterInstance, MemoryRevision

pytestmark = pytest.mark.django_db


def test_instance_names_are_unique_case_insensitively(user, character, instance):
    with pytest.raises(services.NameTaken):
        services.instance_create(owner=user, character=character, name="ROSA")


def test_database_enforces_case_insensitive_uniqueness(user, character, instance):
    with pytest.raises(IntegrityError), transaction.atomic():
        CharacterInstance.objects.create(owner=user, character=character, name="Rosa")


def test_name_taken_across_owners(other_user, other_character, instance):
    with pytest.raises(services.NameTaken):
        services.instance_create(owner=other_user, character=other_character, name="rosa")


@pytest.mark.parametrize("name", ["with space", "", "-leading", "x" * 65, "a/b"])
def test_instance_name_must_be_slug_like(user, character, name):
    with pytest.raises(ValidationError) as excinfo:
        services.instance_create(owner=user, character=character, name=name)
    assert "name" in excinfo.value.message_dict


def test_unicode_instance_names_are_allowed(user, character):
    assert services.instance_create(owner=user, character=character, name="José-2").pk


def test_memory_is_bounded(user, character, settings):
    settings.MEMORY_MAX_CHARS = 20
    with pytest.raises(ValidationError) as excinfo:
        services.instance_create(owner=user, character=character, name="m", memory="x" * 21)
    assert "limit is 20" in str(excinfo.value.message_dict["memory"])
    assert services.instance_create(owner=user, character=character, name="m", memory="x" * 20)


def test_memory_update_over_limit_changes_nothing(instance, settings):
    settings.MEMORY_MAX_CHARS = 10
    with pytest.raises(ValidationError):
        services.memory_update(instance=instance, text="y" * 11)
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
    assert instance.memory_revisions.count() == 0


def test_memory_update_keeps_previous_text(instance, user):
    services.memory_update(instance=instance, text="Le gusta el té.", author=user, note="tea")
    instance.refresh_from_db()
    assert instance.memory == "Le gusta el té."
    revision = instance.memory_revisions.get()
    assert revision.text == "Vive en Madrid."
    assert revision.author == user
    assert revision.source == MemoryRevision.Source.API
    assert revision.note == "tea"


def test_unchanged_memory_writes_no_revision(instance):
    services.memory_update(instance=instance, text=instance.memory)
    assert instance.memory_revisions.count() == 0


def test_memory_restore_brings_text_back_and_keeps_current(instance, user):
    services.memory_update(instance=instance, text="Second.", author=user)
    services.memory_update(instance=instance, text="Third.", author=user)
    first = instance.memory_revisions.get(text="Vive en Madrid.")
    services.memory_restore(instance=instance, revision=first, author=user)
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
    newest = instance.memory_revisions.first()
    assert newest.text == "Third."
    assert newest.source == MemoryRevision.Source.RESTORE
    assert sorted(instance.memory_revisions.values_list("text", flat=True)) == [
        "Second.",
        "Third.",
        "Vive en Madrid.",
    ]


def test_character_with_instances_is_protected(character, instance):
    with pytest.raises(services.InUse):
        services.character_delete(character=character)
    assert type(character).objects.filter(pk=character.pk).exists()


def test_character_without_instances_can_be_deleted(character):
    services.character_delete(character=character)
    assert not type(character).objects.filter(pk=character.pk).exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("language", "Spanish"),
        ("temperature", 2.5),
        ("max_tokens", 0),
        ("voices", {"edge": 3}),
        ("voices", ["edge"]),
        ("name", ""),
    ],
)
def test_character_validation(user, field, value):
    fields = {"name": "N", "description": "D", "language": "en", field: value}
    with pytest.raises(ValidationError) as excinfo:
        services.character_create(owner=user, **fields)
    assert field in excinfo.value.message_dict


def test_description_is_bounded(user, settings):
    settings.DESCRIPTION_MAX_CHARS = 10
    with pytest.raises(ValidationError):
        services.character_create(owner=user, name="N", description="d" * 11)


def test_unknown_service_fields_are_refused(user):
    with pytest.raises(TypeError):
        services.character_create(owner=user, name="N", description="D", owner_id=3)
