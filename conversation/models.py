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
    consolidation_attempts = models.PositiveIntegerField(
        default=0, help_text="Failed consolidations in a row (0 after a success)."
    )
    consolidation_next_at = models.DateTimeField(
        null=True, blank=True, help_text="After a failure: no automatic retry before this time."
    )
    consolidation_error = models.CharField(
        max_length=200, blank=True, help_text="Why the last consolidation failed, if it did."
    )
    turn_holder = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="Who holds the turn in progress (a voice session or one request); empty: none.",
    )
    turn_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The turn's lease ends then unless renewed (a crashed process lets go by it).",
    )

    def __str__(self) -> str:
        return f"{self.conversation_id}: folded {self.folded_messages}"
