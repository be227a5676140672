"""Pydantic schemas for the characters API: what goes in and what comes out."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ninja import Schema
from pydantic import Field

NAME = Field(min_length=1, max_length=100)
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"  # As characters.models.LANGUAGE_VALIDATOR.
INSTANCE_NAME = Field(min_length=1, max_length=64, examples=["luna"])


class CharacterIn(Schema):
    name: str = NAME
    description: str = Field(min_length=1, description="The character's personality.")
    language: str = Field(
        "en", min_length=2, max_length=20, pattern=LANGUAGE_PATTERN, examples=["es", "en"]
    )
    greeting: str = Field("", max_length=1000)
    voices: dict[str, str] = Field(default_factory=dict, examples=[{"edge": "es-ES-AlvaroNeural"}])
    model_name: str = Field("", max_length=200)
    temperature: float | None = Field(None, ge=0.0, le=2.0, strict=True)
    max_tokens: int | None = Field(None, ge=1, le=8192, strict=True)


class CharacterPatch(Schema):
    """Fields sent are changed; fields left out are kept. `null` resets a field that has a
    default (`greeting`, `model_name` → "", `voices` → {}, `temperature`, `max_tokens` → the
    server default); `name`, `description` and `language` cannot be null."""

    name: str = Field(None, min_length=1, max_length=100)
    description: str = Field(None, min_length=1)
    language: str = Field(None, min_length=2, max_length=20, pattern=LANGUAGE_PATTERN)
    greeting: str | None = Field(None, max_length=1000)
    voices: dict[str, str] | None = None
    model_name: str | None = Field(None, max_length=200)
    temperature: float | None = Field(None, ge=0.0, le=2.0, strict=True)
    max_tokens: int | None = Field(None, ge=1, le=8192, strict=True)

    def changes(self) -> dict:
        """The fields sent, with `null` turned into the field's default."""
        resets = {"greeting": "", "model_name": "", "voices": {}}
        return {
            name: resets.get(name) if value is None else value
            for name, value in self.dict(exclude_unset=True).items()
        }


class CharacterOut(Schema):
    id: UUID
    name: str
    description: str
    language: str
    greeting: str
    voices: dict[str, str]
    model_name: str
    temperature: float | None
    max_tokens: int | None
    owner: str = Field(alias="owner.username")
    instance_count: int = 0
    created_at: datetime
    updated_at: datetime


class InstanceIn(Schema):
    name: str = INSTANCE_NAME
    character_id: UUID
    memory: str = ""


class InstancePatch(Schema):
    """Fields sent are changed; none of them may be null."""

    name: str = Field(None, min_length=1, max_length=64)
    character_id: UUID = None
    memory: str = None


class InstanceOut(Schema):
    id: UUID
    name: str
    character_id: UUID
    character_name: str = Field(alias="character.name")
    language: str = Field(alias="character.language")
    memory: str
    owner: str = Field(alias="owner.username")
    created_at: datetime
    updated_at: datetime


class MemoryIn(Schema):
    text: str
    note: str = Field("", max_length=200)


class MemoryOut(Schema):
    instance_id: UUID
    text: str
    chars: int
    limit: int
    updated_at: datetime


class MemoryRevisionOut(Schema):
    id: int
    text: str
    source: str
    author: str | None
    note: str
    created_at: datetime

    @staticmethod
    def resolve_author(obj) -> str | None:
        return obj.author.username if obj.author else None


TITLE_MAX_CHARS = 60


def conversation_title(text: str, limit: int = TITLE_MAX_CHARS) -> str:
    """One line of at most `limit` characters, cut at a word boundary with "…" when longer."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


class ConversationOut(Schema):
    id: UUID
    instance_id: UUID
    instance_name: str = Field(alias="instance.name")
    channel: str
    summary: str
    started_at: datetime
    ended_at: datetime | None
    last_activity_at: datetime
    message_count: int = 0
    title: str = Field(
        "", description="The first user message, shortened to a line; empty before the first turn."
    )

    @staticmethod
    def resolve_title(conversation) -> str:
        return conversation_title(getattr(conversation, "first_user_text", None) or "")


class MessageOut(Schema):
    id: UUID
    conversation_id: UUID
    role: str
    text: str
    created_at: datetime
    interrupted: bool
    error: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    timings: dict
