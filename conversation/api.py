"""Chat endpoints: a reply as JSON or as server-sent events, ending conversations, consolidation.

Async views: the ORM runs through `sync_to_async`, the model stream on the event loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Router, Schema

from characters import selectors

from . import services
from .engines import LlmError, LlmTimeoutError

router = Router(tags=["conversation"])


class ChatIn(Schema):
    text: str
    conversation: UUID | None = None


def _error(status: int, code: str, detail: str, **extra) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code, **extra}, status=status)


def _status_for(exc: LlmError) -> int:
    return 504 if isinstance(exc, LlmTimeoutError) else 502


def _turn_ids(turn: services.Turn) -> dict:
    return {
        "conversation_id": str(turn.conversation.pk),
        "user_message_id": str(turn.user_message.pk),
        "message_id": str(turn.assistant_message.pk) if turn.assistant_message else None,
    }


def _done_body(turn: services.Turn) -> dict:
    message = turn.assistant_message
    return {
        **_turn_ids(turn),
        "text": message.text,
        "model": message.model,
        "interrupted": message.interrupted,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "timings": message.timings,
    }


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _wants_stream(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.GET.get("stream") in {"1", "true", "yes"} or "text/event-stream" in accept


@router.post("/instances/{instance_id}/chat", response={200: dict})
async def chat(request: HttpRequest, instance_id: UUID, payload: ChatIn):
    """Reply to `text`. JSON by default; SSE with `Accept: text/event-stream` or `?stream=1`."""
    instance = await sync_to_async(selectors.instance_get)(
        user=request.auth, instance_id=instance_id
    )
    try:
        turn = await services.reply_start(
            instance=instance,
            user=request.auth,
            text=payload.text,
            conversation_id=payload.conversation,
            channel="api",
        )
    except services.ConversationEnded as exc:
        return _error(409, "conversation_ended", str(exc))
    if _wants_stream(request):
        response = StreamingHttpResponse(_events(turn), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    try:
        async for _ in turn.stream():
            pass
    except LlmError as exc:
        return _error(_status_for(exc), exc.code, str(exc), **_turn_ids(turn))
    await turn.finish()
    return _done_body(turn)


async def _events(turn: services.Turn) -> AsyncGenerator[str, None]:
    yield _sse("start", _turn_ids(turn))
    try:
        async with contextlib.aclosing(turn.stream()) as deltas:
            async for delta in deltas:
                yield _sse("delta", {"delta": delta})
    except LlmError as exc:
        yield _sse("error", {"code": exc.code, "message": str(exc), **_turn_ids(turn)})
        return
    await turn.finish()
    yield _sse("done", _done_body(turn))


class EndOut(Schema):
    id: UUID
    ended_at: str
    consolidation: str


@router.post("/conversations/{conversation_id}/end", response=EndOut)
async def end_conversation(request: HttpRequest, conversation_id: UUID):
    """End a conversation; its memory consolidation starts in the background."""
    conversation = await sync_to_async(selectors.conversation_get)(
        user=request.auth, conversation_id=conversation_id
    )
    conversation = await services.conversation_end(conversation=conversation)
    return {
        "id": conversation.pk,
        "ended_at": conversation.ended_at.isoformat(),
        "consolidation": "scheduled" if settings.MEMORY_CONSOLIDATION else "disabled",
    }


class ConsolidateOut(Schema):
    instance_id: UUID
    conversations: int
    memory: str
    revision_id: int | None


@router.post("/instances/{instance_id}/memory/consolidate", response=ConsolidateOut)
async def consolidate_memory(request: HttpRequest, instance_id: UUID) -> HttpResponse | dict:
    """Consolidate now every conversation of the instance not yet in its memory (open ones too)."""
    instance = await sync_to_async(selectors.instance_get)(
        user=request.auth, instance_id=instance_id
    )
    try:
        result = await services.memory_consolidate(instance_id=instance.pk, include_open=True)
    except LlmError as exc:
        return _error(_status_for(exc), exc.code, str(exc))
    return result.__dict__
