"""One turn of a conversation: the only door into conversations (HTTP, SSE, `chat`, voice).

    turn = reply_turn(instance=..., user=..., text="Hola", conversation_id=None, channel="ws")
    async with turn:                       # validates, stores the user message, builds the prompt
        turn.conversation_id, turn.user_message_id
        async for delta in turn.deltas():  # the model's text as it comes
            ...
        turn.heard("Hola.")                # optional: what the user actually heard
        turn.add_timings({"first_audio_ms": 812.0})
    turn.reply_message_id, turn.error      # after exit

Rules (docs/conversation.md#turns):
- Enter stores the user message before the model is called. The store finishes even if the caller
  is cancelled meanwhile (the cancel is re-raised after it), so `turn.conversation_id` and
  `turn.user_message_id` are known as soon as the message exists; a turn cut before its reply
  gets an empty reply marked interrupted, so every user message has exactly one reply.
- Exit stores the reply exactly once, also when cancelled: the text heard (else produced), marked
  `interrupted` when the exit is a cancel, the caller stopped reading early, or the heard text is
  shorter than the produced one; with `error` when the model (or the caller's code) failed.
- Model failures do not raise out of `deltas()`: the iteration ends and `turn.error` says why
  (an `LlmError`, `LlmStalledError` when tokens stop for LLM_TOKEN_TIMEOUT s). Enter raises
  `ValidationError`, `ConversationNotFound`, `ConversationEnded`, `TurnInProgress` or
  `MessageNotStored`.
- Writes are retried through a short database outage (conversation.retry); a reply that still
  cannot be stored sets `turn.error` to `ReplyNotStored` (never lost silently).
- One turn at a time per conversation (conversation.records): enter takes the conversation's
  turn lease for `session_id` (a voice session's turns follow one another; its new turn
  supersedes its own previous one) or else for this turn alone, and raises `TurnInProgress` when
  another holder's turn is in progress; exit lets go of it, and a long turn renews it.
- Observers of the instance (/ws/observe/) get transcript.final, response.started,
  response.text.delta and response.done from here (conversation.observe).

Over 300 lines on purpose: enter, deltas and exit stay in one class so that the cancellation
rules can be read (and checked against tests/conversation/test_turn_cancellation.py) in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from characters.models import CharacterInstance
from characters.prompt import PromptTooLong
from characters.tokens import count_tokens
from realtime.ids import new_id
from realtime.text_safety import unsafe_reason

from . import records
from .background import complete_despite_cancel, run_in_background
from .engines import LlmEngine, LlmError, LlmStream, get_engine
from .errors import (
    ConversationEnded,
    ConversationNotFound,
    LlmPromptTooLong,
    LlmStalledError,
    MessageNotStored,
    ReplyNotStored,
    ReplyOrphaned,
    TurnError,
    TurnInProgress,
)
from .observe import Publisher
from .retry import TRANSIENT
from .summary import (
    FoldPlan,
    ReplyPlan,
    plan_reply,
    reply_plan_for,
    summary_fold,
    token_counter,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ConversationEnded",
    "ConversationNotFound",
    "ReplyTurn",
    "TurnInProgress",
    "conversation_open",
    "reply_turn",
    "text_validate",
    "turn_free_check",
]


def text_validate(text: str | None) -> str:
    """The message stripped; `ValidationError` when empty, over CHAT_MAX_CHARS, or holding text
    that cannot be stored (NUL, an unpaired surrogate: what a door's own check may have missed,
    such as undecodable bytes on the chat command's stdin)."""
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": ["Say something: the message is empty."]})
    if reason := unsafe_reason(text):
        raise ValidationError({"text": [reason]})
    limit = settings.CHAT_MAX_CHARS
    if len(text) > limit:
        raise ValidationError(
            {"text": [f"The message is {len(text)} characters; the limit is {limit}."]}
        )
    return text


async def conversation_open(
    *,
    instance: CharacterInstance,
    user: AbstractBaseUser,
    conversation_id: Any = None,
    channel: str = "api",
) -> Any:
    """The id of a new conversation (`conversation_id` None) or of `conversation_id` checked:
    it must be the user's, on this instance, and not ended. Raises `ConversationNotFound`,
    `ConversationEnded`."""
    conversation = await sync_to_async(records.conversation_open)(
        instance.pk, user, conversation_id, channel, lock=False
    )
    return conversation.pk


async def turn_free_check(conversation_id: Any) -> None:
    """Raise `TurnInProgress` when a turn of the conversation is in progress now (a door that
    cannot refuse later, such as an event stream, asks first; entering still decides)."""
    if conversation_id and await sync_to_async(records.turn_in_progress)(conversation_id):
        raise TurnInProgress(
            "Another turn of this conversation is in progress (another request or socket); "
            "wait for its reply, then send again."
        )


def reply_turn(
    *,
    instance: CharacterInstance,
    user: AbstractBaseUser,
    text: str,
    conversation_id: Any = None,
    channel: str = "api",
    engine: LlmEngine | None = None,
    observe: bool = True,
    session_id: str | None = None,
    response_id: str | None = None,
    continue_ended: bool = False,
) -> ReplyTurn:
    """A turn to use with `async with`. `observe=False` leaves publishing to the caller;
    `session_id` and `response_id` are copied into the observer events. `continue_ended`: a
    live session's conversation that the idle sweep ended meanwhile is opened again."""
    return ReplyTurn(
        instance=instance,
        user=user,
        text=text,
        requested_conversation_id=conversation_id,
        channel=channel,
        engine=engine,
        observe=observe,
        session_id=session_id,
        response_id=response_id,
        continue_ended=continue_ended,
    )


class ReplyTurn:
    """One exchange: the stored user message and the reply streamed and stored for it."""

    def __init__(
        self,
        *,
        instance: CharacterInstance,
        user: AbstractBaseUser,
        text: str,
        requested_conversation_id: Any,
        channel: str,
        engine: LlmEngine | None,
        observe: bool,
        session_id: str | None,
        response_id: str | None,
        continue_ended: bool = False,
    ) -> None:
        self.instance = instance
        self._continue_ended = continue_ended
        self.user = user
        self.text = text
        self.channel = channel
        self.id = response_id or new_id()
        self.holder = session_id or self.id  # Who holds the conversation's turn lease.
        self._lease_keeper: asyncio.Task | None = None
        self.conversation_id: Any = None
        self.user_message_id: Any = None
        self.reply_message_id: Any = None
        self.error: LlmError | TurnError | None = None
        self.timings: dict[str, Any] = {}
        self.model = ""
        self.prompt_tokens = 0
        self._requested = requested_conversation_id
        self._engine = engine
        self.plan: ReplyPlan | None = None
        self._llm: LlmStream | None = None
        self._heard: str | None = None
        self._history: tuple[str, list] | None = None  # (summary, turns) read with the store
        self._tokens: int | None = None  # The stored message's token count.
        self._completed = False
        self._entered = False
        self._exited = False
        extra = {"session_id": session_id, "channel": channel}
        self._publisher = Publisher(instance.pk, enabled=observe, extra=extra)

    # The caller's side ----------------------------------------------------------------------

    @property
    def produced(self) -> str:
        """Everything the model produced so far."""
        return self._llm.text if self._llm is not None else ""

    def heard(self, text: str) -> None:
        """What the user actually heard; stored instead of the produced text."""
        self._heard = text

    def add_timings(self, timings: dict[str, Any]) -> None:
        """Figures (ms) merged into the stored reply's `timings`."""
        self.timings.update(timings)

    async def deltas(self):
        """The reply's text deltas. Ends early (with `self.error` set) when the model fails."""
        if not self._entered or self._exited:
            raise RuntimeError("Read deltas() inside `async with` the turn.")
        if self._llm is not None:
            raise RuntimeError("A turn's deltas are read once.")
        if self.error is not None:
            return
        self._llm = self._engine.stream(
            self.plan.messages,
            model=self.plan.model,
            temperature=self.plan.temperature,
            max_tokens=self.plan.max_tokens,
        )
        stall = settings.LLM_TOKEN_TIMEOUT
        started = False
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
                # that lands as the token arrives (the cancellation table found it).
                async with asyncio.timeout(stall if started and stall > 0 else None):
                    delta = await self._llm.__anext__()
            except StopAsyncIteration:
                self._completed = True
                return
            except TimeoutError:
                self.error = LlmStalledError(
                    f"The model sent no text for {stall:g} s after its reply had started."
                )
                return
            except LlmError as exc:
                self.error = exc
                return
            if not delta:
                continue
            started = True
            self._publisher.put(
                {"type": "response.text.delta", "response_id": self.id, "delta": delta}
            )
            yield delta

    # Enter ----------------------------------------------------------------------------------

    async def __aenter__(self) -> ReplyTurn:
        if self._entered:
            raise RuntimeError("A turn is entered once.")
        self._entered = True
        text = text_validate(self.text)
        started = time.monotonic()
        self._engine = self._engine or get_engine()
        store = asyncio.ensure_future(self._store_user(text))
        try:
            await complete_despite_cancel(store)
        except asyncio.CancelledError:
            if self.user_message_id is not None:
                await self._exit(cancelled=True)
            raise
        self._publisher.put(
            {
                "type": "transcript.final",
                "text": text,
                "message_id": str(self.user_message_id),
                "conversation_id": str(self.conversation_id),
            }
        )
        try:
            if self._history is not None:  # Read with the store, in the same thread hop.
                self.plan = reply_plan_for(
                    self._engine, self.instance, text, *self._history, text_tokens=self._tokens
                )
            else:
                self.plan = await plan_reply(
                    self._engine, self.instance, self.conversation_id, self.user_message_id, text
                )
            self.model = self.plan.model
            self.prompt_tokens = self.plan.prompt_tokens
        except PromptTooLong as exc:
            self.error = LlmPromptTooLong(str(exc))
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self.timings["prepare_ms"] = round((time.monotonic() - started) * 1000, 1)
        self._publisher.put({"type": "response.started", "response_id": self.id})
        return self

    async def _store_user(self, text: str) -> None:
        try:
            conversation, message, self._history = await sync_to_async(
                records.user_message_store_and_history
            )(
                self.instance.pk,
                self.user,
                text,
                self._requested,
                self.channel,
                continue_ended=self._continue_ended,
                holder=self.holder,
            )
        except TRANSIENT as exc:
            raise MessageNotStored(
                f"The message could not be stored ({type(exc).__name__}); try again."
            ) from exc
        self.conversation_id = conversation.pk
        self.user_message_id = message.pk
        self._tokens = message.text_tokens
        self.instance = conversation.instance  # Reloaded with its character, off the loop.
        self._lease_keeper = asyncio.create_task(self._keep_lease())

    async def _keep_lease(self) -> None:
        """Renew the turn lease while the turn runs (replies spoken for long outlast it)."""
        every = max(1.0, settings.CONVERSATION_TURN_LEASE_SECONDS / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await sync_to_async(records.turn_lease_renew)(self.conversation_id, self.holder)
            except TRANSIENT:
                logger.warning("Turn lease of %s not renewed (database).", self.conversation_id)

    # Exit -----------------------------------------------------------------------------------

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        cancelled = exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt
        )
        if exc is not None and not cancelled and self.error is None:
            self.error = (
                exc
                if isinstance(exc, LlmError | TurnError)
                else TurnError(f"internal: {type(exc).__name__}")
            )
        await self._exit(cancelled=cancelled)
        return False

    async def _exit(self, *, cancelled: bool) -> None:
        if self._exited:
            return
        self._exited = True
        await complete_despite_cancel(asyncio.ensure_future(self._finish(cancelled)))

    async def _finish(self, cancelled: bool) -> None:
        if self._lease_keeper is not None:
            self._lease_keeper.cancel()
        if self._llm is not None and not self._completed:
            try:
                await self._llm.aclose()
            except Exception as exc:  # The stream is done with either way.
                self.timings.setdefault("close_error", type(exc).__name__)
        produced = self.produced
        text = produced if self._heard is None else self._heard
        interrupted = cancelled or (self.error is None and not self._completed)
        if len(text.strip()) < len(produced.strip()):
            interrupted = True
        try:
            self.reply_message_id = await sync_to_async(records.reply_store)(
                self.conversation_id,
                self.holder,
                **self._reply_fields(text.strip(), interrupted),
            )
        except ReplyOrphaned as exc:  # Deleted meanwhile: said to the client, not a failure.
            self.error = exc
        except Exception as exc:  # Retried already if transient; never lost silently.
            if not isinstance(exc, TRANSIENT):
                logger.exception("Storing reply %s failed.", self.id)
            cause = f" after {self.error.describe()}" if self.error else ""
            self.error = ReplyNotStored(
                f"The reply could not be stored ({type(exc).__name__}){cause}."
            )
        done = {
            "type": "response.done",
            "response_id": self.id,
            "text": text.strip(),
            "interrupted": interrupted,
            "message_id": str(self.reply_message_id) if self.reply_message_id else None,
            "conversation_id": str(self.conversation_id),
        }
        if self.error is not None:
            done["error"] = self.error.describe()
        self._publisher.put(done)
        self._publisher.close()
        if self.plan is not None and self.plan.needs_fold and self.reply_message_id is not None:
            fold = FoldPlan(
                conversation_id=self.conversation_id,
                instance_id=self.instance.pk,
                model=self.plan.model,
                context_tokens=self.plan.context_tokens,
                reply_tokens=self.plan.max_tokens,
                next_user_text=self.text,
            )
            engine = self._engine
            run_in_background(
                summary_fold(fold, engine, token_counter(engine)), what="summary folding"
            )

    def _reply_fields(self, text: str, interrupted: bool) -> dict[str, Any]:
        llm = self._llm
        result = llm.result if llm else None
        timings: dict[str, Any] = {"prepare_ms": self.timings.get("prepare_ms")}
        if llm is not None:
            timings["first_token_ms"] = llm.first_token_ms
            timings["total_ms"] = result.total_ms if result else llm.elapsed_ms()
        if result is not None:
            timings["finish_reason"] = result.finish_reason
        timings.update(self.timings)
        return {
            "text": records.storable(text),
            "interrupted": interrupted,
            "error": self.error.describe() if self.error else "",
            "model": ((result.model if result else None) or self.model)[:200],
            "prompt_tokens": (result.prompt_tokens if result else None)
            or self.prompt_tokens
            or None,
            "completion_tokens": result.completion_tokens
            if result and result.completion_tokens is not None
            else count_tokens(self.produced),
            "timings": timings,
        }
