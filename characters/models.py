"""Characters (Personaje), their instances (Instancia), conversations and memory history."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from realtime.text_safety import validate_safe_text

from .names import name_key, normalize_name
from .reply_limits import reply_tokens_problem
from .tokens import count_to_store
from .voices import voice_problem

LANGUAGE_VALIDATOR = RegexValidator(
    r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "Use a language tag such as 'es', 'en' or 'es-MX'."
)
INSTANCE_NAME_VALIDATOR = RegexValidator(
    r"^\w[\w.-]{0,63}$",
    "Use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit (no spaces).",
)


def validate_memory_length(value: str) -> None:
    limit = settings.MEMORY_MAX_CHARS
    if len(value) > limit:
        raise ValidationError(
            f"Memory is {len(value)} characters; the limit is {limit}.", code="max_length"
        )


def validate_description_length(value: str) -> None:
    limit = settings.DESCRIPTION_MAX_CHARS
    if len(value) > limit:
        raise ValidationError(
            f"Description is {len(value)} characters; the limit is {limit}.", code="max_length"
        )


def validate_voices(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 200 for k, v in value.items()
    ):
        raise ValidationError("Voices map an engine name to a voice name, e.g. {'edge': '…'}.")
    validate_safe_text(value)
    # Checked when saved: a voice an engine lacks would fail every sentence of this character.
    problems = [p for engine, voice in value.items() if (p := voice_problem(engine, voice))]
    if problems:
        raise ValidationError(" ".join(problems), code="unknown_voice")


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Character(TimestampedModel):
    """A character: its personality (description), language, voice and model settings."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="characters"
    )
    name = models.CharField(max_length=100, validators=[validate_safe_text])
    name_key = models.CharField(max_length=300, editable=False, default="", db_index=True)
    description = models.TextField(
        validators=[validate_description_length, validate_safe_text],
        help_text="The character's personality.",
    )
    language = models.CharField(max_length=20, default="en", validators=[LANGUAGE_VALIDATOR])
    greeting = models.TextField(blank=True, max_length=1000, validators=[validate_safe_text])
    voices = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_voices],
        help_text='TTS voice per engine, e.g. {"edge": "es-ES-AlvaroNeural", "espeak": "es"}.',
    )
    model_name = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_safe_text],
        help_text="Chat model for this character; blank uses the default.",
    )
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(8192)]
    )

    class Meta:
        ordering = ["name", "created_at"]
        indexes = [models.Index(fields=["owner", "name"])]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.name_key = name_key(self.name)  # Derived: search by name folds every letter.
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.name_key = name_key(self.name)
        limited = isinstance(self.max_tokens, int) and self.max_tokens > 0
        if limited and (problem := reply_tokens_problem(self.max_tokens, self.model_name or "")):
            raise ValidationError({"max_tokens": problem})


class InstanceQuerySet(models.QuerySet):
    def named(self, name: str) -> InstanceQuerySet:
        """Instances whose name equals `name`, ignoring case and Unicode form (names.name_key)."""
        return self.filter(name_key=name_key(name))


class CharacterInstance(TimestampedModel):
    """A variation of a character with its own unique name and its own memory."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="character_instances"
    )
    # PROTECT: deleting a character that still has instances is refused (HTTP 409), so an
    # instance's memory is never lost as a side effect.
    character = models.ForeignKey(Character, on_delete=models.PROTECT, related_name="instances")
    name = models.CharField(max_length=64, validators=[INSTANCE_NAME_VALIDATOR])
    # Unique: names are unique across all owners for every letter and Unicode form.
    name_key = models.CharField(max_length=200, editable=False, default="")
    memory = models.TextField(
        blank=True, default="", validators=[validate_memory_length, validate_safe_text]
    )

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name_key"],
                name="unique_instance_name_key",
                violation_error_message="That instance name is already taken.",
            ),
        ]
        verbose_name = "instance"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.name = normalize_name(self.name)
        self.name_key = name_key(self.name)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.name = normalize_name(self.name)
        self.name_key = name_key(self.name)


class MemoryRevision(models.Model):
    """The text an instance's memory held before a change: memory is never lost."""

    class Source(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        CONSOLIDATION = "consolidation", "Consolidation"
        RESTORE = "restore", "Restore"
        SYSTEM = "system", "System"

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        CharacterInstance, on_delete=models.CASCADE, related_name="memory_revisions"
    )
    text = models.TextField(blank=True, help_text="The memory as it was before this change.")
    source = models.CharField(max_length=20, choices=Source.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.instance} memory before {self.created_at:%Y-%m-%d %H:%M} ({self.source})"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        CharacterInstance, on_delete=models.CASCADE, related_name="conversations"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    channel = models.CharField(max_length=20, default="api", help_text="api, ws, cli…")
    summary = models.TextField(blank=True, help_text="Rolling summary of older turns.")
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.instance} · {self.started_at:%Y-%m-%d %H:%M}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    interrupted = models.BooleanField(default=False, help_text="Cut short by the user or a cancel.")
    error = models.CharField(max_length=200, blank=True, help_text="Why a reply failed, if it did.")
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Per-turn latency figures (ms).")
    text_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="cl100k_base tokens in the text (prompt budgets); empty when not counted.",
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"

    def save(self, *args, **kwargs) -> None:
        # Counted once here, so building a prompt does not encode the whole history each turn.
        # A new message may come counted already (conversation.records counts before taking
        # the write lock); any other save of the text counts it again.
        update_fields = kwargs.get("update_fields")
        counted = self._state.adding and self.text_tokens is not None
        if not counted and (update_fields is None or "text" in update_fields):
            self.text_tokens = count_to_store(self.text)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "text_tokens"}
        super().save(*args, **kwargs)
