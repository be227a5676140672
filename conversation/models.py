"""Bookkeeping the conversation engine keeps beside `characters.Conversation`."""

from __future__ import annotations

from django.db import models

from characters.models import Conversation


class ConversationState(models.Model):
    """How much of a conversation is folded into its summary and consolidated into memory."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, primary_key=True, related_name="engine_state"
    )
    folded_messages = models.PositiveIntegerField(
        default=0, help_text="The oldest messages already folded into Conversation.summary."
    )
    consolidated_at = models.DateTimeField(
        null=True, blank=True, help_text="When its turns were last consolidated into memory."
    )

    def __str__(self) -> str:
        return f"{self.conversation_id}: folded {self.folded_messages}"
