"""Admin: characters with inline instances, memory history with restore, read-only conversations."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest

from realtime.strict_json import StrictJSONDecoder

from . import services
from .models import Character, CharacterInstance, Conversation, MemoryRevision, Message


class InstanceInline(admin.TabularInline):
    model = CharacterInstance
    extra = 0
    fields = ("name", "owner", "updated_at")
    readonly_fields = ("updated_at",)
    show_change_link = True


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ("name", "language", "owner", "model_name", "updated_at")
    list_filter = ("language", "owner")
    search_fields = ("name", "description")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [InstanceInline]
    # `voices` as strict JSON: NaN or a 5,000-digit number is a form error, not a 500.
    formfield_overrides = {models.JSONField: {"decoder": StrictJSONDecoder}}


class MemoryRevisionInline(admin.TabularInline):
    model = MemoryRevision
    extra = 0
    fields = ("created_at", "source", "author", "note", "text")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(CharacterInstance)
class CharacterInstanceAdmin(admin.ModelAdmin):
    list_display = ("name", "character", "owner", "updated_at")
    list_filter = ("character__language", "owner")
    search_fields = ("name", "memory", "character__name")
    readonly_fields = ("id", "created_at", "updated_at")
    autocomplete_fields = ("character",)
    inlines = [MemoryRevisionInline]

    def save_model(self, request: HttpRequest, obj: CharacterInstance, form, change: bool) -> None:
        if change and "memory" in form.changed_data:
            new_memory = obj.memory
            obj.memory = form.initial.get("memory", "")
            services.memory_update(
                instance=obj,
                text=new_memory,
                author=request.user,
                source=MemoryRevision.Source.ADMIN,
                note="Edited in the admin",
            )
        else:
            super().save_model(request, obj, form, change)


@admin.register(MemoryRevision)
class MemoryRevisionAdmin(admin.ModelAdmin):
    list_display = ("instance", "created_at", "source", "author", "note")
    list_filter = ("source",)
    search_fields = ("instance__name", "text", "note")
    readonly_fields = ("instance", "text", "source", "author", "note", "created_at")
    actions = ["restore"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Restore the selected revision into its instance's memory")
    def restore(self, request: HttpRequest, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one revision.", messages.ERROR)
            return
        revision = queryset.select_related("instance").get()
        services.memory_restore(instance=revision.instance, revision=revision, author=request.user)
        self.message_user(request, f"Restored {revision.instance}'s memory.", messages.SUCCESS)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = (
        "created_at",
        "role",
        "text",
        "interrupted",
        "error",
        "model",
        "completion_tokens",
        "timings",
    )
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Read-only: conversations are a record of what was said."""

    list_display = ("instance", "owner", "channel", "started_at", "ended_at")
    list_filter = ("channel", "instance__character", "owner")
    search_fields = ("instance__name", "messages__text")
    readonly_fields = ("id", "instance", "owner", "channel", "summary", "started_at", "ended_at")
    exclude = ("last_activity_at",)
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
