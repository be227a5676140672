"""Turns end to end (real services, database and engines; the fake OpenAI-compatible server):
back-to-back turns, a turn cut at every point, who ends a turn, and a session's lifetime."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from channels.db import database_sync_to_async

from audio_pipeline import stt
from characters.models import Conversation, Message
from tests.fake_openai import Reply
from tests.speech_samples import key_words_found
from tests.voice_helpers import connect, events_until, next_event, send, start_session
from voice.session import VoiceSession

pytestmark = pytest.mark.django_db(transaction=True)

LONG = " ".join(f"Sentence number {n} is here." for n in range(1, 12))


@pytest.fixture
def nova(user, make_character, make_instance):
    character = make_character(
        user,
        name="Captain Nova",
        description="A calm starship captain.",
        language="en",
        voices={"espeak": "en-us"},
    )
    return make_instance(user, "nova", character=character)


@pytest.fixture(autouse=True)
def _fast_offline_speech(settings):
    settings.TTS_ENGINES = ["espeak"]
    settings.MEMORY_CONSOLIDATION = False
    settings.WS_TURNS_PER_MINUTE = 1000


def stored_messages() -> list[tuple[str, str, bool]]:
    return [
        (m.role, m.text, m.interrupted)
        for m in Message.objects.order_by("created_at", "id").only("role", "text", "interrupted")
    ]


async def finish_turns(ws, count: int) -> list[dict]:
    """Events until `count` metrics (one per reply) have arrived."""
    events: list[dict] = []
    while sum(1 for e in events if e["type"] == "metrics") < count:
        events += await events_until(ws, "metrics", timeout=60)
    return events


def assert_second_turn_holds_the_first(events: list[dict], fake_openai) -> None:
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert [e["text"] for e in finals] == ["My name is Ana.", "What is my name?"]
    dones = [e for e in events if e["type"] == "response.done"]
    assert len(dones) == 2 and not dones[1]["interrupted"]
    assert len({e["conversation_id"] for e in finals + dones}) == 1
    prompt = fake_openai.chat_requests[-1].messages
    assert any(m["role"] == "user" and m["content"] == "My name is Ana." for m in prompt)
    assert prompt[-1] == {"role": "user", "content": "What is my name?"}


async def test_back_to_back_typed_turns_keep_one_conversation_and_the_history(
    token, nova, fake_openai
):
    """The reported example: the second message sent at once, while the first is being stored."""
    fake_openai.script("Nice to meet you, Ana.", "Your name is Ana.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "My name is Ana."})
    await send(ws, {"type": "input_text", "text": "What is my name?"})
    events = await finish_turns(ws, 2)
    assert_second_turn_holds_the_first(events, fake_openai)
    first_done = next(e for e in events if e["type"] == "response.done")
    stored = await database_sync_to_async(stored_messages)()
    assert [(role, text) for role, text, _ in stored if role == "user"] == [
        ("user", "My name is Ana."),
        ("user", "What is my name?"),
    ]
    assert [role for role, _, _ in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1][2] is first_done["interrupted"]
    assert stored[1][1] == first_done["text"]
    assert await database_sync_to_async(Conversation.objects.count)() == 1
    await ws.disconnect()


# The points of turn 1 after which turn 2 (or a disconnect) cuts it, seen on the wire.
CUTS = [
    None,  # at once, before anything came back
    "transcript.final",
    "response.started",
    "response.text.delta",
    "response.sentence",
    "<binary>",  # the first audio went out
    "metrics",  # the reply is over
]


@pytest.mark.parametrize("cut", CUTS)
async def test_a_second_turn_at_any_point_of_the_first_loses_nothing(token, nova, fake_openai, cut):
    fake_openai.script(Reply(LONG, token_delay=0.01), "Your name is Ana.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "My name is Ana."})
    seen = await events_until(ws, cut, timeout=60) if cut else []
    await send(ws, {"type": "input_text", "text": "What is my name?"})
    events = seen + await finish_turns(ws, 2 - (cut == "metrics"))
    assert_second_turn_holds_the_first(events, fake_openai)
    stored = await database_sync_to_async(stored_messages)()
    assert [role for role, _, _ in stored] == ["user", "assistant", "user", "assistant"]
    first_done = next(e for e in events if e["type"] == "response.done")
    assert (stored[1][1], stored[1][2]) == (first_done["text"], first_done["interrupted"])
    assert await database_sync_to_async(Conversation.objects.count)() == 1
    await ws.disconnect()


@pytest.mark.parametrize("cut", CUTS[:-1])
async def test_a_disconnect_at_any_point_of_a_turn_stores_it_marked(token, nova, fake_openai, cut):
    fake_openai.script(Reply(LONG * 4, token_delay=0.05))  # Still talking when the socket goes.
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "My name is Ana."})
    if cut:
        await events_until(ws, cut, timeout=60)
    await ws.disconnect()
    stored: list = []
    for _ in range(100):  # The consumer finishes storing after the socket is gone.
        stored = await database_sync_to_async(stored_messages)()
        if len(stored) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(role, interrupted) for role, _, interrupted in stored] == [
        ("user", False),
        ("assistant", True),
    ]
    assert stored[0][1] == "My name is Ana."
    assert await database_sync_to_async(Conversation.objects.count)() == 1


def spoken_with_pauses(speech: bytes) -> list[bytes]:
    """Speech, a 1.5 s pause (the recogniser's endpoint), the speech again, a short tail."""
    pause = b"\x00\x00" * 24000
    audio = speech + pause + speech + b"\x00\x00" * 4000
    frame = 16000 * 2 // 25  # 40 ms
    return [audio[position : position + frame] for position in range(0, len(audio), frame)]


async def test_push_to_talk_a_hold_with_pauses_is_one_turn_at_commit(
    token, nova, fake_openai, english_16k
):
    fake_openai.script("One answer.")
    ws = await connect(token)
    started = await start_session(ws, "nova", turn_detection=None)
    assert started["turn_detection"] is None
    for chunk in spoken_with_pauses(english_16k):
        await ws.send_to(bytes_data=chunk)
    await send(ws, {"type": "input_audio.commit"})
    events = await events_until(ws, "metrics", timeout=90)
    kinds = [e["type"] for e in events]
    assert "transcript.partial" in kinds
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 1  # Not one per pause: the commit ended the only turn.
    assert key_words_found(finals[0]["text"], ("weather", "nice", "today", "coffee"), 3)
    assert len(finals[0]["text"].split()) >= 18  # Both halves of the hold (13 words each).
    assert kinds.count("response.started") == 1
    assert await database_sync_to_async(Message.objects.filter(role="user").count)() == 1
    await ws.disconnect()


async def test_server_vad_the_same_pauses_end_turns_before_any_commit(
    token, nova, fake_openai, english_16k
):
    fake_openai.script("First.", "Second.")
    ws = await connect(token)
    started = await start_session(ws, "nova", turn_detection={"type": "server_vad"})
    assert started["turn_detection"] == {"type": "server_vad"}
    for chunk in spoken_with_pauses(english_16k):
        await ws.send_to(bytes_data=chunk)
    events = await events_until(ws, "transcript.final", timeout=60)
    assert key_words_found(events[-1]["text"], ("weather", "nice", "today", "coffee"), 3)
    await ws.disconnect()


async def test_the_recogniser_is_built_at_the_first_audio_only(
    token, nova, fake_openai, monkeypatch
):
    built: list[str] = []
    real = stt.create_recognizer

    def counting(language, *args, **kwargs):
        built.append(language)
        return real(language, *args, **kwargs)

    monkeypatch.setattr(stt, "create_recognizer", counting)
    fake_openai.script("Hello.")
    ws = await connect(token)
    started = await start_session(ws, "nova")
    assert started["stt_engine"] is not None  # Named before it is built.
    await send(ws, {"type": "input_text", "text": "Hi"})
    await events_until(ws, "metrics", timeout=60)
    await send(ws, {"type": "input_audio.commit"})
    await send(ws, {"type": "ping"})
    await events_until(ws, "pong")
    assert built == []  # A text-only session never builds one.
    await ws.send_to(bytes_data=b"\x00\x00" * 640)
    # Built off the event loop after the frame is queued; a ping is answered without waiting
    # for it (frames no longer cross a thread hop, which used to give it time), so poll.
    for _ in range(200):
        if built:
            break
        await asyncio.sleep(0.05)
    await ws.send_to(bytes_data=b"\x00\x00" * 640)
    await send(ws, {"type": "ping"})
    await events_until(ws, "pong")
    assert built == ["en"]  # Once, at the first audio.
    await ws.disconnect()


async def test_a_language_without_a_recogniser_says_so_at_the_first_audio(
    token, instance, settings
):
    settings.STT_ENGINES = ["pocketsphinx"]  # English only: nothing serves Spanish.
    settings.STT_ENGINES_BY_LANGUAGE = {}
    ws = await connect(token)
    started = await start_session(ws, "rosa")
    assert started["stt_engine"] is None
    await send(ws, {"type": "ping"})
    assert (await next_event(ws))["type"] == "pong"  # No error before the microphone is used.
    await ws.send_to(bytes_data=b"\x00\x00" * 640)
    event = await next_event(ws)
    assert (event["type"], event["code"]) == ("error", "stt_failed")
    assert "unavailable" in event["message"]
    await ws.disconnect()


async def test_a_closed_session_is_freed_without_a_garbage_collection(user, nova, fake_openai):
    fake_openai.script("Hello there.")
    sent: list[str] = []
    closed: list[int] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    async def send_bytes(data: bytes) -> None:
        sent.append("<audio>")

    async def close(code: int) -> None:
        closed.append(code)

    session = VoiceSession(user=user, send_text=send_text, send_bytes=send_bytes, close=close)
    await session.on_text('{"type": "session.start", "instance": "nova"}')
    await session.on_text('{"type": "input_text", "text": "Hi"}')
    for _ in range(600):
        if any('"metrics"' in text for text in sent):
            break
        await asyncio.sleep(0.05)
    await session.on_bytes(b"\x00\x00" * 640)  # Builds the recogniser.
    for _ in range(200):
        if session.recognise is not None and session.recognise.opened:
            break
        await asyncio.sleep(0.05)
    assert session.recognise.opened
    recogniser = session.recognise._recogniser
    await session.disconnected()
    assert recogniser._executor._shutdown  # Released.
    freed = weakref.ref(session)
    gc.collect()
    gc.disable()
    try:
        del session, recogniser
        assert freed() is None, gc.get_referrers(freed()) if freed() else None
    finally:
        gc.enable()


async def test_a_live_session_goes_on_after_the_idle_sweep_ended_its_conversation(
    token, nova, fake_openai, settings
):
    """A socket left open and silent past MEMORY_IDLE_SECONDS: the sweep ends the conversation
    (and consolidates its memory); the next turn continues that same conversation, with its
    history in the prompt, instead of failing."""
    from conversation.memory import consolidate_idle

    settings.MEMORY_IDLE_SECONDS = 0
    fake_openai.default_reply = Reply("Noted.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "My ship is called Lumen."})
    first = await events_until(ws, "response.done", timeout=30)
    conversation_id = first[-1]["conversation_id"]
    await consolidate_idle()
    ended = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    assert ended.ended_at is not None, "the sweep ended it"

    await send(ws, {"type": "input_text", "text": "What is my ship called?"})
    second = await events_until(ws, "response.done", timeout=30)
    assert not [e for e in second if e["type"] == "error"], second
    final = next(e for e in second if e["type"] == "transcript.final")
    assert final["conversation_id"] == conversation_id
    assert second[-1]["conversation_id"] == conversation_id and "error" not in second[-1]
    reopened = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    assert reopened.ended_at is None
    texts = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("created_at")
            .values_list("text", flat=True)
        )
    )()
    assert texts == ["My ship is called Lumen.", "Noted.", "What is my ship called?", "Noted."]
    prompt = " ".join(m["content"] for m in fake_openai.chat_requests[-1].messages)
    assert "My ship is called Lumen." in prompt
    await ws.disconnect()
