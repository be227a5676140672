"""REST endpoints for characters, instances, memory and conversation history.

Thin by design: validate with schemas, call a selector or a service, shape the answer.
Anything that is not the caller's is a 404, never a 403.
"""

from uuid import UUID

from django.conf import settings
from django.http import HttpRequest
from ninja import Path, Query, Router, Schema, Status
from ninja.pagination import paginate

from realtime.errors import ErrorOut
from realtime.pagination import LimitOffset

from . import selectors, services
from .models import Character, Conversation
from .schemas import (
    CharacterIn,
    CharacterOut,
    CharacterPatch,
    ConversationOut,
    InstanceIn,
    InstanceOut,
    InstancePatch,
    MemoryIn,
    MemoryOut,
    MemoryRevisionOut,
    MessageOut,
)

router = Router(tags=["characters"])
MAX_ID = 2**63 - 1  # Database integer ids; larger ones cannot exist (and overflow SQLite).


class CharacterFilters(Schema):
    language: str = ""
    q: str = ""


class InstanceFilters(Schema):
    character_id: UUID | None = None
    q: str = ""


class ConversationFilters(Schema):
    instance_id: UUID | None = None


def _memory_out(instance) -> dict:
    return {
        "instance_id": instance.id,
        "text": instance.memory,
        "chars": len(instance.memory),
        "limit": settings.MEMORY_MAX_CHARS,
        "updated_at": instance.updated_at,
    }


def _own_character(request: HttpRequest, character_id: UUID) -> Character:
    return selectors.character_get(user=request.auth, character_id=character_id)


# Characters ---------------------------------------------------------------------------------


@router.get("/characters", response=list[CharacterOut])
@paginate(LimitOffset)
def list_characters(request: HttpRequest, filters: Query[CharacterFilters]):
    return selectors.character_list(user=request.auth, language=filters.language, q=filters.q)


@router.post("/characters", response={201: CharacterOut})
def create_character(request: HttpRequest, payload: CharacterIn):
    character = services.character_create(owner=request.auth, **payload.dict())
    return Status(201, _own_character(request, character.id))


@router.get("/characters/{character_id}", response=CharacterOut)
def get_character(request: HttpRequest, character_id: UUID):
    return _own_character(request, character_id)


@router.patch("/characters/{character_id}", response=CharacterOut)
def update_character(request: HttpRequest, character_id: UUID, payload: CharacterPatch):
    character = _own_character(request, character_id)
    services.character_update(character=character, **payload.changes())
    return _own_character(request, character_id)


@router.delete("/characters/{character_id}", response={204: None, 409: ErrorOut})
def delete_character(request: HttpRequest, character_id: UUID):
    services.character_delete(character=_own_character(request, character_id))
    return Status(204, None)


# Instances ----------------------------------------------------------------------------------


@router.get("/instances", response=list[InstanceOut])
@paginate(LimitOffset)
def list_instances(request: HttpRequest, filters: Query[InstanceFilters]):
    return selectors.instance_list(
        user=request.auth, character_id=filters.character_id, q=filters.q
    )


@router.post("/instances", response={201: InstanceOut, 409: ErrorOut})
def create_instance(request: HttpRequest, payload: InstanceIn):
    character = _own_character(request, payload.character_id)
    instance = services.instance_create(
        owner=request.auth, character=character, name=payload.name, memory=payload.memory
    )
    return Status(201, instance)


@router.get("/instances/by-name/{name}", response=InstanceOut)
def get_instance_by_name(request: HttpRequest, name: str):
    return selectors.instance_get_by_name(user=request.auth, name=name)


@router.get("/instances/{instance_id}", response=InstanceOut)
def get_instance(request: HttpRequest, instance_id: UUID):
    return selectors.instance_get(user=request.auth, instance_id=instance_id)


@router.patch("/instances/{instance_id}", response={200: InstanceOut, 409: ErrorOut})
def update_instance(request: HttpRequest, instance_id: UUID, payload: InstancePatch):
    instance = selectors.instance_get(user=request.auth, instance_id=instance_id)
    changes = payload.dict(exclude_unset=True)
    character = None
    if changes.get("character_id"):
        character = _own_character(request, changes["character_id"])
    return services.instance_update(
        instance=instance,
        author=request.auth,
        name=changes.get("name"),
        character=character,
        memory=changes.get("memory"),
    )


@router.delete("/instances/{instance_id}", response={204: None})
def delete_instance(request: HttpRequest, instance_id: UUID):
    services.instance_delete(
        instance=selectors.instance_get(user=request.auth, instance_id=instance_id)
    )
    return Status(204, None)


# Memory -------------------------------------------------------------------------------------


@router.get("/instances/{instance_id}/memory", response=MemoryOut)
def get_memory(request: HttpRequest, instance_id: UUID):
    return _memory_out(selectors.instance_get(user=request.auth, instance_id=instance_id))


@router.put("/instances/{instance_id}/memory", response=MemoryOut)
def update_memory(request: HttpRequest, instance_id: UUID, payload: MemoryIn):
    instance = selectors.instance_get(user=request.auth, instance_id=instance_id)
    services.memory_update(
        instance=instance, text=payload.text, author=request.auth, note=payload.note
    )
    return _memory_out(instance)


@router.get("/instances/{instance_id}/memory/revisions", response=list[MemoryRevisionOut])
@paginate(LimitOffset)
def list_memory_revisions(request: HttpRequest, instance_id: UUID):
    instance = selectors.instance_get(user=request.auth, instance_id=instance_id)
    return selectors.memory_revision_list(instance=instance)


@router.post("/instances/{instance_id}/memory/revisions/{revision_id}/restore", response=MemoryOut)
def restore_memory_revision(
    request: HttpRequest, instance_id: UUID, revision_id: int = Path(..., ge=1, le=MAX_ID)
):
    instance = selectors.instance_get(user=request.auth, instance_id=instance_id)
    revision = selectors.memory_revision_list(instance=instance).get(pk=revision_id)
    services.memory_restore(instance=instance, revision=revision, author=request.auth)
    return _memory_out(instance)


# Conversations (read-only here; the conversation engine writes them) --------------------------


@router.get("/conversations", response=list[ConversationOut], tags=["conversations"])
@paginate(LimitOffset)
def list_conversations(request: HttpRequest, filters: Query[ConversationFilters]):
    return selectors.conversation_list(user=request.auth, instance_id=filters.instance_id)


@router.get("/conversations/{conversation_id}", response=ConversationOut, tags=["conversations"])
def get_conversation(request: HttpRequest, conversation_id: UUID):
    return selectors.conversation_get(user=request.auth, conversation_id=conversation_id)


@router.post(
    "/conversations/{conversation_id}/reopen", response=ConversationOut, tags=["conversations"]
)
def reopen_conversation(request: HttpRequest, conversation_id: UUID):
    """Open a past conversation again so a session (`session.start` with `conversation`) or a
    chat request can continue it. Only its owner may."""
    conversation = selectors.conversation_get(user=request.auth, conversation_id=conversation_id)
    if conversation.owner_id != request.auth.pk:
        raise Conversation.DoesNotExist
    services.conversation_reopen(conversation=conversation)
    return conversation


@router.get(
    "/conversations/{conversation_id}/messages", response=list[MessageOut], tags=["conversations"]
)
@paginate(LimitOffset)
def list_messages(request: HttpRequest, conversation_id: UUID):
    conversation = selectors.conversation_get(user=request.auth, conversation_id=conversation_id)
    return selectors.message_list(conversation=conversation)
