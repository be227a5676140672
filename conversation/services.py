"""Conversation writes outside a turn: ending a conversation (which schedules consolidation).

Turns are in `conversation.turns`, summary folding in `conversation.summary`, consolidation in
`conversation.memory`, background work in `conversation.background`, reads in
`conversation.selectors`.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from characters.models import Conversation

from .background import run_in_background
from .memory import memory_consolidate

__all__ = ["conversation_end"]


async def conversation_end(*, conversation: Conversation, consolidate: bool = True) -> Conversation:
    """End a conversation; consolidate it into memory in the background when MEMORY_CONSOLIDATION
    is on (and `consolidate`)."""
    conversation = await sync_to_async(_conversation_end)(conversation.pk)
    if consolidate and settings.MEMORY_CONSOLIDATION:
        run_in_background(
            memory_consolidate(instance_id=conversation.instance_id), what="memory consolidation"
        )
    return conversation


def _conversation_end(conversation_id: Any) -> Conversation:
    Conversation.objects.filter(pk=conversation_id, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )
    return Conversation.objects.get(pk=conversation_id)
