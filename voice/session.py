"""A voice session: one WebSocket's protocol state around its pipeline (voice/pipeline.py).

Before `session.start` only the deliver stage exists (errors, pongs). `session.start` finds the
instance and builds the chain with the engines plugged in. Receiving never waits for a reply:
every stage runs in its own task. Closing interrupts the reply in flight (it is stored, marked),
cancels every task, releases the recogniser and drops every reference back to the session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from accounts import usage
from characters import selectors

from . import engines, observe
from .frames import AudioIn, EndRequest, Failure, Frame, Ping, Pong, SessionEnded, SessionStarted
from .gone_watch import gone_watch, what_is_gone
from .limits import VoiceLimits
from .pipeline import Pipeline
from .protocol import (
    CLOSE_NORMAL,
    CLOSE_NOT_FOUND,
    CLOSE_SLOW_CLIENT,
    CLOSE_TIMEOUT,
    TEXT_ONLY,
    ProtocolError,
    SessionStart,
    parse_client,
)
from .stages.deliver import DeliverStage
from .stages.hear import HearStage
from .stages.recognise import RecogniseStage
from .stages.reply import ReplyStage
from .stages.speak import SpeakStage
from .stages.split import SplitStage
from .stages.turns import TurnsStage

logger = logging.getLogger(__name__)
_teardowns: set[asyncio.Task] = set()  # Held until done: a shielded task needs an owner.


def _nothing_to_say(text: str) -> str:
    return ""


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
        self.deliver = DeliverStage(
            send_text,
            send_bytes,
            max_items=self.limits.outbound_queue_items,
            on_overflow=self._overflow,
        )
        self.deliver.start()
        self.pipeline: Pipeline | None = None
        self.reply: ReplyStage | None = None
        self.recognise: RecogniseStage | None = None
        self.voice_activity = False  # the pipeline has the hear stage (VAD, end of turn)
        self.started_at = time.monotonic()
        self.last_activity = self.started_at
        self.closing = False
        self.instance_id: Any = None  # Once started: watched, the session ends if it is deleted.
        self._tasks: set[asyncio.Task] = set()
        self._spawn(self._watchdog())

    # Incoming -----------------------------------------------------------------------------

    async def on_text(self, raw: str) -> None:
        self.last_activity = time.monotonic()
        try:
            message = parse_client(raw, max_text_chars=self.limits.max_text_chars)
            if isinstance(message, SessionStart):
                await self._start(message)
            elif isinstance(message, Ping):
                await self._emit(Pong(message.id, message.has_id))
            elif isinstance(message, EndRequest):
                await self.end()
            else:
                await self._started_pipeline().send(message)
        except ProtocolError as exc:
            await self._emit(exc.frame())

    async def on_bytes(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            if len(data) > self.limits.max_frame_bytes:
                raise ProtocolError(
                    "frame_too_large",
                    f"Audio frame of {len(data)} bytes dropped; the limit is "
                    f"{self.limits.max_frame_bytes}.",
                )
            pipeline = self._started_pipeline()
            if len(data) % 2:
                raise ProtocolError("bad_audio", "PCM16 frames must hold whole 16-bit samples.")
            await pipeline.send(AudioIn(data, time.monotonic()))
        except ProtocolError as exc:
            await self._emit(exc.frame())

    def _started_pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise ProtocolError("not_started", "Send session.start first.")
        return self.pipeline

    # Session start and end -------------------------------------------------------------------

    async def _start(self, start: SessionStart) -> None:
        if self.pipeline is not None:
            raise ProtocolError("already_started", "This session has already started.")
        instance = await sync_to_async(selectors.instance_find_by_name)(
            user=self.user, name=start.instance
        )
        if instance is None:
            raise ProtocolError("instance_not_found", f"No instance named {start.instance!r}.")
        if start.conversation and not await engines.conversation_check(
            instance=instance, user=self.user, conversation_id=start.conversation
        ):
            raise ProtocolError(
                "conversation_not_found", "That conversation is not one of this instance's."
            )
        character = instance.character
        language = start.language or character.language
        if start.output_format != TEXT_ONLY and not await engines.language_spoken(
            language, dict(character.voices or {})
        ):
            raise ProtocolError(
                "language_unsupported",
                f"No configured TTS engine speaks {language!r}: choose another 'language', or "
                'text replies with output_audio {"format": "none"}.',
            )
        names = engines.engine_names(language)
        self.pipeline = self._build(start, instance, language)
        self.pipeline.start()
        instance_id, session_id = instance.id, self.id

        async def broadcast(event: dict[str, Any]) -> None:
            await observe.publish(instance_id, {**event, "session_id": session_id})

        self.deliver.set_broadcast(broadcast)
        self.instance_id = instance.id
        gone_watch().add(self, self._watched, self._gone)
        await self._emit(
            SessionStarted(
                session_id=self.id,
                conversation_id=start.conversation,
                instance_id=str(instance.id),
                instance_name=instance.name,
                character=character.name,
                character_language=character.language,
                language=language,
                input_format=start.input_audio.format,
                input_rate=start.input_audio.sample_rate,
                output_format=start.output_format,
                limits=self.limits,
                stt_engine=engines.stt_engine_name(language),
                tts_engines=[] if start.output_format == TEXT_ONLY else names["tts_engines"],
                llm_engine=names["llm_engine"],
                turn_detection=start.turn_detection,
                **_barge_in(self.voice_activity),
            )
        )

    def _build(self, start: SessionStart, instance: Any, language: str) -> Pipeline:
        """The chain for this session, each engine plugged in as a small callable."""
        voices = dict(instance.character.voices or {})
        rate = start.input_audio.sample_rate
        self.recognise = RecogniseStage(
            functools.partial(engines.open_transcriber, language, rate), input_rate=rate
        )
        hearing = self.voice_activity = engines.voice_activity_enabled()
        preemptive = hearing and engines.preemptive_generation()
        self.reply = ReplyStage(
            engines.reply_turn(instance=instance, user=self.user, session_id=self.id),
            conversation_id=start.conversation,
            preempt=engines.preemptor(instance=instance) if preemptive else None,
            ends_session=self._ends_session,
        )
        hear = [
            HearStage(
                functools.partial(engines.open_hearing, rate),
                input_rate=rate,
                server_turns=start.turn_detection is not None,
                interrupt_min_speech_ms=engines.interrupt_min_speech_ms(),
                preempt_after_ms=engines.turn_min_delay_ms() if preemptive else None,
            )
        ]
        return Pipeline(
            [
                *(hear if hearing else []),
                self.recognise,
                TurnsStage(
                    turn_detection=start.turn_detection,
                    voice_activity=hearing,
                    allow_turn=self._allow_turn,
                ),
                self.reply,
                SplitStage(engines.sentence_splitter),
                SpeakStage(
                    functools.partial(
                        engines.synthesize_sentence,
                        language=language,
                        voices=voices,
                        output_format=start.output_format,
                    ),
                    # Text only: no sentence has anything to say aloud, so none is synthesised
                    # and each counts as delivered (seen) when its text goes out.
                    _nothing_to_say if start.output_format == TEXT_ONLY else engines.speakable,
                ),
                self.deliver,
            ]
        )

    async def _allow_turn(self) -> Failure | None:
        """None when the user's turn budget (all sessions and doors) takes one more turn."""
        wait_s = await usage.turn_take(self.user)
        if wait_s is None:
            return None
        return Failure(
            "rate_limited", usage.turn_refusal(wait_s), retry_after=usage.retry_after(wait_s)
        )

    async def end(self) -> None:
        """`session.end`: finish the reply in flight, say goodbye, close normally."""
        conversation_id = None
        if self.pipeline is not None:
            await self.pipeline.interrupt("session end")
            conversation_id = self.reply.conversation_id if self.reply else None
        if conversation_id:
            await engines.end_conversation(conversation_id)
        await self._emit(SessionEnded(None if conversation_id is None else str(conversation_id)))
        await self._shutdown(CLOSE_NORMAL)

    async def disconnected(self) -> None:
        """The socket is gone: store what was said, stop everything, let go of everything.

        Runs to its end even if the caller is cancelled (an ASGI server may cancel the consumer
        soon after the disconnect): a reply cut here must still be stored, marked."""
        teardown = asyncio.ensure_future(self._teardown())
        _teardowns.add(teardown)
        teardown.add_done_callback(_teardowns.discard)
        await asyncio.shield(teardown)

    async def _teardown(self) -> None:
        self.closing = True
        gone_watch().discard(self)
        if self.pipeline is not None:
            await self.pipeline.close()
        else:
            await self.deliver.stop()
        if self.recognise is not None:
            self.recognise.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pipeline = self.reply = self.recognise = None
        self._close = _closed

    async def _shutdown(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        await self.deliver.drain()
        await self._close(code)

    async def _fatal(self, code: str, message: str, close_code: int) -> None:
        if self.closing:
            return
        if self.pipeline is not None:
            await self.pipeline.interrupt("fatal")
        self.closing = True
        await self.deliver.accept(Failure(code, message, fatal=True))  # Dropped if overflowing.
        await self.deliver.drain()
        await self._close(close_code)

    # Deleted while live -------------------------------------------------------------------

    def _watched(self) -> tuple[Any, Any]:
        """(instance id, conversation id or None): what this session uses, now."""
        return self.instance_id, self.reply.conversation_id if self.reply else None

    async def _gone(self, code: str, message: str) -> None:
        """The instance or the conversation was deleted: say so and close (4404)."""
        self._spawn(self._fatal(code, message, CLOSE_NOT_FOUND))

    async def _ends_session(self, exc: BaseException) -> bool:
        """A turn could not be opened: if the instance or the conversation is gone, the session
        ends (`_gone`) instead of answering `llm_failed`; True then."""
        try:
            gone = await sync_to_async(what_is_gone)({self: self._watched()})
        except Exception:
            return False  # The database is down: that turn's own error says so.
        if self not in gone:
            return False
        gone_watch().discard(self)
        await self._gone(*gone[self])
        return True

    # Plumbing -----------------------------------------------------------------------------

    async def _emit(self, frame: Frame) -> None:
        await self.deliver.accept(frame)

    def _overflow(self, message: str) -> None:
        if not self.closing:
            self._spawn(self._fatal("slow_client", message, CLOSE_SLOW_CLIENT))

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
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _barge_in(voice_activity: bool) -> dict[str, Any]:
    """What will interrupt a reply in this session (told to the client in session.started)."""
    if voice_activity:
        return {
            "barge_in": "speech_started",
            "interrupt_min_speech_ms": engines.interrupt_min_speech_ms(),
        }
    return {"barge_in": "partial", "interrupt_min_speech_ms": None}


async def _closed(code: int) -> None:
    """The socket is gone: nothing to close."""
