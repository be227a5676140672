"""A voice session: one WebSocket's state and the tasks it owns.

Stages: audio frames → speech recogniser (partials, finals) → a reply run (model → sentences →
audio) → the outbox. Receiving never waits for a reply: recognition runs in its own task, each
reply in another, and the outbox writer in a third. All are cancelled when the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from characters import selectors

from . import engines, observe
from .clock import SpeechClock
from .limits import TurnRateLimiter, VoiceLimits
from .outbox import Outbox, OutboxOverflow
from .protocol import (
    CLOSE_NORMAL,
    CLOSE_SLOW_CLIENT,
    CLOSE_TIMEOUT,
    PROTOCOL,
    ProtocolError,
    SessionStart,
    error_event,
    parse_message,
    parse_session_start,
    parse_text,
    str_or_none,
)
from .response import ResponseRun, SessionContext, TurnInput

logger = logging.getLogger(__name__)

_COMMIT = object()  # Marks "end of utterance now" in the audio queue, in order with the audio.
AUDIO_QUEUE_ITEMS = 500


class VoiceSession:
    def __init__(
        self,
        *,
        user: Any,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
        limits: VoiceLimits | None = None,
    ) -> None:
        self.user = user
        self.limits = limits or VoiceLimits.from_settings()
        self.id = uuid.uuid4().hex
        self._close = close
        self.outbox = Outbox(
            send_text, send_bytes, self.limits.outbound_queue_items, broadcast=self._broadcast
        )
        self.rate_limiter = TurnRateLimiter(self.limits.turns_per_minute)
        self.context: SessionContext | None = None
        self.transcriber = None
        self.input_rate = 16000
        self.clock = SpeechClock()
        self.audio_queue: asyncio.Queue = asyncio.Queue(AUDIO_QUEUE_ITEMS)
        self.response: ResponseRun | None = None
        self.started_at = time.monotonic()
        self.last_activity = self.started_at
        self.closing = False
        self._last_partial = ""
        self._tasks: list[asyncio.Task] = []
        self._group: str | None = None
        self._spawn(self.outbox.run())
        self._spawn(self._watchdog())

    # Incoming -----------------------------------------------------------------------------

    async def on_text(self, raw: str) -> None:
        self.last_activity = time.monotonic()
        try:
            message = parse_message(raw)
            await self._dispatch(message)
        except ProtocolError as exc:
            self._emit(exc.event())

    async def on_bytes(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            self._accept_audio(data)
        except ProtocolError as exc:
            self._emit(exc.event())

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            self._emit({"type": "pong", **({"id": message["id"]} if "id" in message else {})})
        elif kind == "session.start":
            await self._start(parse_session_start(message))
        elif kind == "input_text":
            self._require_started()
            text = parse_text(message, self.limits.max_text_chars)
            now = time.monotonic()
            await self._begin_turn(TurnInput(text=text, speech_end=now, final_at=now))
        elif kind == "input_audio.commit":
            self._require_started()
            self._enqueue_audio(_COMMIT)
        elif kind == "response.cancel":
            self._require_started()
            await self._interrupt()
        elif kind == "session.end":
            await self.end()
        else:
            raise ProtocolError("unknown_type", f"Unknown message type {kind!r}.")

    def _require_started(self) -> None:
        if self.context is None:
            raise ProtocolError("not_started", "Send session.start first.")

    # Session start and end -------------------------------------------------------------------

    async def _start(self, start: SessionStart) -> None:
        if self.context is not None:
            raise ProtocolError("already_started", "This session has already started.")
        instance = await sync_to_async(selectors.instance_find_by_name)(
            user=self.user, name=start.instance
        )
        if instance is None:
            raise ProtocolError("instance_not_found", f"No instance named {start.instance!r}.")
        if start.conversation and not await sync_to_async(_conversation_ok)(
            self.user, instance, start.conversation
        ):
            raise ProtocolError(
                "conversation_not_found", "That conversation is not one of this instance's."
            )
        character = instance.character
        language = start.language or character.language
        stt_engine = None
        try:
            self.transcriber = await asyncio.to_thread(
                engines.open_transcriber, language, start.input_audio.sample_rate
            )
            stt_engine = self.transcriber.engine
        except Exception as exc:
            logger.warning("No recogniser for %s: %s", language, exc)
            self._emit(error_event("stt_failed", f"Speech recognition is unavailable: {exc}"))
        self.input_rate = start.input_audio.sample_rate
        self.context = SessionContext(
            user=self.user,
            instance=instance,
            language=language,
            voices=dict(character.voices or {}),
            output_format=start.output_format,
            conversation_id=start.conversation,
        )
        self._group = observe.group_for(instance.id)
        self._emit(
            {
                "type": "session.started",
                "protocol": PROTOCOL,
                "session_id": self.id,
                "conversation_id": str(start.conversation) if start.conversation else None,
                "instance": {
                    "id": str(instance.id),
                    "name": instance.name,
                    "character": character.name,
                    "language": character.language,
                },
                "language": language,
                "input_audio": start.input_audio.as_dict(),
                "output_audio": {"format": start.output_format},
                "limits": self.limits.as_dict(),
                "stt_engine": stt_engine,
                **engines.engine_names(language),
            },
            observe=True,
        )
        if self.transcriber is not None:
            self._spawn(self._recognition())

    async def end(self) -> None:
        """`session.end`: finish the reply in flight, say goodbye, close normally."""
        if self.response is not None and self.response.active:
            await self._interrupt()
        conversation_id = self.context.conversation_id if self.context else None
        if conversation_id:
            await engines.end_conversation(conversation_id)
        self._emit(
            {"type": "session.ended", "conversation_id": str_or_none(conversation_id)},
            observe=True,
        )
        await self._shutdown(CLOSE_NORMAL)

    async def disconnected(self) -> None:
        """The socket is gone: stop everything, keeping what was said."""
        self.closing = True
        if self.response is not None:
            await self.response.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transcriber is not None:
            self.transcriber.close()

    async def _shutdown(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        await self.outbox.drain()
        await self._close(code)

    async def _fatal(self, code: str, message: str, close_code: int) -> None:
        if self.closing:
            return
        if self.response is not None and self.response.active:
            await self._interrupt()
        self.closing = True
        with contextlib.suppress(OutboxOverflow):  # Not reading: close without a goodbye.
            self.outbox.event(error_event(code, message, fatal=True))
        await self.outbox.drain()
        await self._close(close_code)

    # Audio in ---------------------------------------------------------------------------------

    def _accept_audio(self, data: bytes) -> None:
        if len(data) > self.limits.max_frame_bytes:
            raise ProtocolError(
                "frame_too_large",
                f"Audio frame of {len(data)} bytes dropped; the limit is "
                f"{self.limits.max_frame_bytes}.",
            )
        self._require_started()
        if len(data) % 2:
            raise ProtocolError("bad_audio", "PCM16 frames must hold whole 16-bit samples.")
        if self.transcriber is None:
            raise ProtocolError("stt_failed", "Speech recognition is unavailable in this session.")
        self._enqueue_audio(data)

    def _enqueue_audio(self, item: object) -> None:
        try:
            self.audio_queue.put_nowait(item)
        except asyncio.QueueFull:
            raise ProtocolError(
                "stt_failed", "Speech recognition is behind; audio was dropped."
            ) from None

    async def _recognition(self) -> None:
        """The recognition stage: runs for the whole session, also while replies play."""
        transcriber = self.transcriber
        while True:
            item = await self.audio_queue.get()
            try:
                if item is _COMMIT:
                    await self._on_transcript(await transcriber.finish(), committed=True)
                    continue
                self.clock.add(len(item) / 2 / self.input_rate)
                for transcript in await transcriber.accept(item):
                    await self._on_transcript(transcript)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("Recognition failed")
                self._emit(error_event("stt_failed", f"Speech recognition failed: {exc}"))

    async def _on_transcript(self, transcript, committed: bool = False) -> None:
        text = (transcript.text or "").strip()
        if not transcript.final:
            if text and text != self._last_partial:
                self._last_partial = text
                self._emit({"type": "transcript.partial", "text": text}, observe=True)
                if self.response is not None and self.response.active:
                    await self._interrupt()  # Barge-in: the user started speaking.
            return
        self._last_partial = ""
        if not text:
            return
        words = getattr(transcript, "words", ()) or ()
        last_word_end = words[-1].end if words else None
        speech_end = self.clock.arrival_of(last_word_end)
        if committed and last_word_end is None:
            speech_end = time.monotonic()
        await self._begin_turn(
            TurnInput(text=text, speech_end=speech_end, final_at=time.monotonic())
        )

    # Replies ------------------------------------------------------------------------------

    async def _begin_turn(self, turn_input: TurnInput) -> None:
        if not self.rate_limiter.allow():
            self._emit(
                error_event(
                    "rate_limited",
                    f"More than {self.limits.turns_per_minute} turns in a minute; wait a moment.",
                )
            )
            return
        if self.response is not None and self.response.active:
            await self._interrupt()
        run = ResponseRun(context=self.context, turn_input=turn_input, outbox=self.outbox)
        self.response = run
        run.task = self._spawn(run.run())

    async def _interrupt(self) -> None:
        if self.response is not None and self.response.active:
            await self.response.cancel()

    # Plumbing -----------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any], *, observe: bool = False) -> None:
        try:
            self.outbox.event(event, observe=observe)
        except OutboxOverflow as exc:
            if not self.closing:
                self._spawn(self._fatal("slow_client", str(exc), CLOSE_SLOW_CLIENT))

    async def _broadcast(self, event: dict[str, Any]) -> None:
        if self._group:
            await observe.publish(self._group, {**event, "session_id": self.id})

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.limits.idle_timeout_seconds / 4))
            now = time.monotonic()
            if now - self.started_at >= self.limits.max_session_seconds:
                await self._fatal(
                    "session_expired",
                    f"Sessions last at most {self.limits.max_session_seconds:g} s.",
                    CLOSE_TIMEOUT,
                )
                return
            if now - self.last_activity >= self.limits.idle_timeout_seconds:
                await self._fatal(
                    "idle_timeout",
                    f"No message for {self.limits.idle_timeout_seconds:g} s.",
                    CLOSE_TIMEOUT,
                )
                return

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Session task failed", exc_info=task.exception())


def _conversation_ok(user, instance, conversation_id: str) -> bool:
    found = selectors.conversation_for_reply(
        user=user, instance=instance, conversation_id=conversation_id
    )
    return found is not None
