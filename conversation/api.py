"""Chat endpoints: a reply as JSON or as server-sent events, ending conversations, consolidation.

Async views: the ORM runs through `sync_to_async`, the model stream on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from ninja import Router, Schema

from accounts import usage
from characters import selectors
from characters.models import Message
from realtime import strict_json

from . import services
from .engines import LlmTimeoutError
from .errors import (
    ConversationEnded,
    ConversationNotFound,
    MessageNotStored,
    ReplyOrphaned,
    TurnError,
    TurnInProgress,
)
from .memory import memory_consolidate
from .turns import ReplyTurn, conversation_open, reply_turn, text_validate, turn_free_check

logger = logging.getLogger(__name__)
router = Router(tags=["conversation"])


class ChatIn(Schema):
    text: str
    conversation: UUID | None = None


def _error(status: int, code: str, detail: str, **extra) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code, **extra}, status=status)


def _status_for(exc: Exception) -> int:
    if isinstance(exc, ReplyOrphaned):
        return 404  # The instance or conversation was deleted during the reply.
    if isinstance(exc, TurnError):
        return 503  # The database refused the write: try again later.
    return 504 if isinstance(exc, LlmTimeoutError) else 502


def _turn_ids(turn: ReplyTurn) -> dict:
    return {
        "conversation_id": str(turn.conversation_id),
        "user_message_id": str(turn.user_message_id),
        "message_id": str(turn.reply_message_id) if turn.reply_message_id else None,
    }


def _done_body(turn: ReplyTurn, message: Message) -> dict:
    return {
        **_turn_ids(turn),
        "text": message.text,
        "model": message.model,
        "interrupted": message.interrupted,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "timings": message.timings,
    }


def _error_body(turn: ReplyTurn) -> dict:
    body = {"code": turn.error.code, "message": str(turn.error), **_turn_ids(turn)}
    if turn.reply_message_id is None:
        body["text"] = turn.produced  # Not stored: the client at least has what was said.
    return body


def _sse(event: str, data: dict) -> str:
    # ASCII escapes: a lone surrogate from the model stays valid JSON and encodable bytes.
    return f"event: {event}\ndata: {strict_json.dumps(data)}\n\n"


def _wants_stream(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.GET.get("stream") in {"1", "true", "yes"} or "text/event-stream" in accept


@router.post("/instances/{instance_id}/chat", response={200: dict})
async def chat(request: HttpRequest, instance_id: UUID, payload: ChatIn):
    """Reply to `text`. JSON by default; SSE with `Accept: text/event-stream` or `?stream=1`.
    409 `turn_in_progress` while another turn of the conversation runs; 429 `rate_limited`
    (Retry-After) over the user's WS_TURNS_PER_MINUTE, counted with their voice turns."""
    instance = await sync_to_async(selectors.instance_get)(
        user=request.auth, instance_id=instance_id
    )
    text = text_validate(payload.text)
    try:
        if payload.conversation is not None:
            await conversation_open(
                instance=instance, user=request.auth, conversation_id=payload.conversation
            )
            await turn_free_check(payload.conversation)
    except (ConversationEnded, TurnInProgress) as exc:
        return _error(409, exc.code, str(exc))
    except ConversationNotFound as exc:
        return _error(404, "not_found", str(exc))
    wait_s = await usage.turn_take(request.auth)
    if wait_s is not None:
        seconds = usage.retry_after(wait_s)
        refused = _error(429, "rate_limited", usage.turn_refusal(wait_s), retry_after=seconds)
        refused["Retry-After"] = str(seconds)
        return refused
    turn = reply_turn(
        instance=instance,
        user=request.auth,
        text=text,
        conversation_id=payload.conversation,
        channel="api",
    )
    if _wants_stream(request):
        response = StreamingHttpResponse(_events(turn), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    try:
        async with turn:
            async for _ in turn.deltas():
                pass
    except MessageNotStored as exc:
        return _error(503, exc.code, str(exc))
    except TurnInProgress as exc:
        return _error(409, exc.code, str(exc))
    if turn.error is not None:
        body = _error_body(turn)
        return _error(_status_for(turn.error), body.pop("code"), body.pop("message"), **body)
    message = await Message.objects.aget(pk=turn.reply_message_id)
    return _done_body(turn, message)


async def _events(turn: ReplyTurn) -> AsyncGenerator[str, None]:
    """The SSE stream: `start`, `delta`s, then `done` or `error`. It always ends with one of the
    two: an exception nobody expected still becomes an `error` event (`internal_error`), so a
    client never waits on a stream that has silently stopped."""
    try:
        async for event in _turn_events(turn):
            yield event
    except Exception:
        logger.exception("Chat stream failed")
        yield _sse(
            "error",
            {
                "code": "internal_error",
                "message": "The server failed on this reply; it was logged.",
            },
        )


async def _turn_events(turn: ReplyTurn) -> AsyncGenerator[str, None]:
    try:
        async with turn:
            yield _sse("start", _turn_ids(turn))
            async for delta in turn.deltas():
                yield _sse("delta", {"delta": delta})
    except (ConversationEnded, ConversationNotFound, MessageNotStored, TurnInProgress) as exc:
        yield _sse("error", {"code": exc.code, "message": str(exc)})
        return
    if turn.error is not None:
        yield _sse("error", _error_body(turn))
        return
    message = await Message.objects.aget(pk=turn.reply_message_id)
    yield _sse("done", _done_body(turn, message))


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


class ConsolidationFailure(Schema):
    conversation_id: UUID
    error: str


class ConsolidateOut(Schema):
    instance_id: UUID
    conversations: int
    memory: str
    revision_id: int | None
    failed: list[ConsolidationFailure]
    deferred: int


@router.post("/instances/{instance_id}/memory/consolidate", response={200: ConsolidateOut})
async def consolidate_memory(request: HttpRequest, instance_id: UUID):
    """Consolidate now every conversation of the instance not yet in its memory (open ones too).

    Each conversation is one model request, counted as a turn of the user's WS_TURNS_PER_MINUTE:
    when the budget runs out the rest are left (`deferred`); 429 `rate_limited` (Retry-After)
    when it allows none and something was to be done."""
    user = request.auth
    instance = await sync_to_async(selectors.instance_get)(user=user, instance_id=instance_id)
    result = await memory_consolidate(
        instance_id=instance.pk, include_open=True, budget=lambda: usage.turn_take(user)
    )
    if result.retry_after is not None and not result.conversations and not result.failed:
        seconds = usage.retry_after(result.retry_after)
        refused = _error(
            429, "rate_limited", usage.turn_refusal(result.retry_after), retry_after=seconds
        )
        refused["Retry-After"] = str(seconds)
        return refused
    return result.__dict__
