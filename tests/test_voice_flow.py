"""The voice loop end to end in-process: real STT/TTS engines, the fake OpenAI-compatible server.

Driven through the real ASGI application with Channels' WebsocketCommunicator.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from audio_pipeline.formats import decode_audio
from characters.models import Conversation, Message
from realtime.asgi import application
from tests.fake_openai import Reply
from tests.speech_samples import key_words_found
from tests.voice_helpers import connect, events_until, next_event, send, start_session

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "Hello there, traveller. The stars are bright tonight. Shall we fly?"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def nova(user, make_character, make_instance):
    character = make_character(
        user,
        name="Captain Nova",
        description="A calm starship captain who explains science simply.",
        language="en",
        voices={"espeak": "en-us"},
    )
    return make_instance(user, "nova", "Her first officer is Bolt.", character=character)


@pytest.fixture(autouse=True)
def _offline_speech(settings):
    """Piper speaks English, espeak the rest; edge is unreachable here anyway."""
    settings.TTS_ENGINES = ["piper", "espeak"]


def audio_pairs(events: list[dict]) -> list[tuple[dict, bytes]]:
    pairs = []
    for position, event in enumerate(events):
        if event["type"] == "response.audio":
            following = events[position + 1]
            assert following["type"] == "<binary>", "response.audio must be followed by audio"
            assert len(following["data"]) == event["bytes"]
            pairs.append((event, following["data"]))
    return pairs


async def typed_turn(ws, text: str) -> list[dict]:
    await send(ws, {"type": "input_text", "text": text})
    return await events_until(ws, "metrics", timeout=60)


async def test_typed_turn_streams_text_sentences_and_audio_in_order(token, nova, fake_openai):
    fake_openai.script(REPLY)
    ws = await connect(token)
    started = await start_session(ws, "NOVA", output_audio={"format": "wav"})
    assert started["instance"]["name"] == "nova"
    assert started["protocol"] == "voz.v1"
    assert started["limits"]["max_frame_bytes"] > 0
    assert started["tts_engines"] == ["piper", "espeak"]
    assert started["llm_engine"] == "openai"
    events = await typed_turn(ws, "Hello captain")
    kinds = [event["type"] for event in events]
    assert kinds[0] == "transcript.final"
    assert kinds[1] == "response.started"
    assert kinds[-2:] == ["response.done", "metrics"]
    final = events[0]
    assert final["text"] == "Hello captain"
    response_id = events[1]["response_id"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
    assert deltas == REPLY
    sentences = [e for e in events if e["type"] == "response.sentence"]
    assert [s["index"] for s in sentences] == [0, 1, 2]
    assert sentences[0]["text"].strip() == "Hello there, traveller."
    pairs = audio_pairs(events)
    assert [event["index"] for event, _ in pairs] == [0, 1, 2]
    for event, data in pairs:
        assert event["response_id"] == response_id
        assert event["format"] == "wav"
        assert data[:4] == b"RIFF"
        decoded = decode_audio(data, target_rate=16000)
        assert decoded.duration_s > 0.3
    # A sentence's audio never comes before the sentence itself.
    assert kinds.index("response.sentence") < kinds.index("response.audio")
    done = events[-2]
    assert done == done | {"response_id": response_id, "text": REPLY, "interrupted": False}
    metrics = events[-1]
    for name in (
        "stt_final_ms",
        "llm_first_token_ms",
        "first_sentence_ms",
        "tts_first_audio_ms",
        "first_audio_ms",
    ):
        assert metrics[name] is not None and metrics[name] >= 0, name
    assert metrics["first_audio_ms"] >= metrics["llm_first_token_ms"]
    stored = await database_sync_to_async(
        lambda: list(Message.objects.order_by("created_at").values_list("role", "text", "id"))
    )()
    assert [(role, text) for role, text, _ in stored] == [
        ("user", "Hello captain"),
        ("assistant", REPLY),
    ]
    assert str(stored[0][2]) == final["message_id"]
    assert str(stored[1][2]) == done["message_id"]
    conversation_id = await database_sync_to_async(lambda: str(Conversation.objects.get().id))()
    assert final["conversation_id"] == done["conversation_id"] == conversation_id
    system = fake_openai.chat_requests[-1].system
    assert "Her first officer is Bolt." in system and "nova" in system
    await ws.disconnect()


@pytest.mark.parametrize("fmt", ["pcm16", "mp3"])
async def test_other_output_formats_are_playable(token, nova, fake_openai, fmt):
    fake_openai.script("Short answer.")
    ws = await connect(token)
    await start_session(ws, "nova", output_audio={"format": fmt})
    events = await typed_turn(ws, "Hi")
    [(event, data)] = audio_pairs(events)
    assert event["format"] == fmt
    if fmt == "pcm16":
        assert len(data) % 2 == 0
        assert len(data) / 2 / event["sample_rate"] > 0.3
    else:
        assert decode_audio(data, target_rate=16000).duration_s > 0.3
    await ws.disconnect()


async def test_text_only_output_streams_text_and_synthesises_nothing(token, nova, fake_openai):
    """`output_audio: {"format": "none"}` (games and kiosks with their own voice): text events
    only, no binary frame, nothing synthesised, the reply stored whole."""
    fake_openai.script(REPLY)
    ws = await connect(token)
    started = await start_session(ws, "nova", output_audio={"format": "none"})
    assert started["output_audio"]["format"] == "none" and started["tts_engines"] == []
    events = await typed_turn(ws, "Hello captain")
    kinds = [event["type"] for event in events]
    assert "<binary>" not in kinds and "response.audio" not in kinds
    sentences = [e["text"] for e in events if e["type"] == "response.sentence"]
    assert len(sentences) == 3 and "".join(sentences).replace(" ", "") == REPLY.replace(" ", "")
    done = next(e for e in events if e["type"] == "response.done")
    assert done["text"] == REPLY and done["interrupted"] is False
    assert events[-1]["first_audio_ms"] is None
    stored = await database_sync_to_async(
        lambda: Message.objects.get(role="assistant").interrupted
    )()
    assert stored is False
    await ws.disconnect()


async def test_text_only_reply_cut_short_keeps_the_sentences_sent(token, nova, fake_openai):
    fake_openai.script(Reply(REPLY, token_delay=0.15))
    ws = await connect(token)
    await start_session(ws, "nova", output_audio={"format": "none"})
    await send(ws, {"type": "input_text", "text": "Hello captain"})
    await events_until(ws, "response.sentence", timeout=30)
    await send(ws, {"type": "response.cancel"})
    events = await events_until(ws, "response.done", timeout=30)
    done = events[-1]
    assert done["interrupted"] is True
    assert done["text"].startswith("Hello there, traveller.") and done["text"] != REPLY
    text = await database_sync_to_async(lambda: Message.objects.get(role="assistant").text)()
    assert text == done["text"]
    await ws.disconnect()


async def test_an_unknown_output_format_is_refused_with_the_choices(token, nova, fake_openai):
    ws = await connect(token)
    await send(ws, {"type": "session.start", "instance": "nova", "output_audio": {"format": "ogg"}})
    error = await events_until(ws, "error", timeout=10)
    assert error[-1]["code"] == "unsupported_format" and "'none'" in error[-1]["message"]
    await ws.disconnect()


async def test_speech_turn_gives_partials_then_final_then_reply(
    token, nova, fake_openai, english_16k, english_text
):
    fake_openai.script("Coffee is a fine idea.")
    ws = await connect(token)
    started = await start_session(ws, "nova")
    assert started["stt_engine"] == "whisper"  # No English Vosk model here: Whisper tiny.en.
    frame = 16000 * 2 // 25  # 40 ms
    for position in range(0, len(english_16k), frame):
        await ws.send_to(bytes_data=english_16k[position : position + frame])
    await ws.send_to(bytes_data=b"\x00\x00" * 8000)
    await send(ws, {"type": "input_audio.commit"})
    events = await events_until(ws, "metrics", timeout=60)
    kinds = [event["type"] for event in events]
    assert "transcript.partial" in kinds
    final = next(e for e in events if e["type"] == "transcript.final")
    assert key_words_found(final["text"], ("weather", "nice", "today", "coffee"), 3), final
    assert kinds.index("transcript.partial") < kinds.index("transcript.final")
    assert audio_pairs(events)
    assert events[-1]["stt_final_ms"] is not None
    user_text = await database_sync_to_async(lambda: Message.objects.get(role="user").text)()
    assert user_text == final["text"]
    await ws.disconnect()


async def test_cancel_stops_audio_and_stores_only_what_was_sent(token, nova, fake_openai):
    long_reply = " ".join(f"Sentence number {n} is here." for n in range(1, 30))
    fake_openai.script(Reply(long_reply, token_delay=0.05))
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "Tell me a long story"})
    seen = await events_until(ws, "<binary>", timeout=30)
    await send(ws, {"type": "response.cancel"})
    after = await events_until(ws, "metrics", timeout=30)
    events = seen + after
    done = next(e for e in after if e["type"] == "response.done")
    assert done["interrupted"] is True
    assert done["message_id"]
    sent_indices = [event["index"] for event, _ in audio_pairs(events)]
    assert sent_indices == list(range(len(sent_indices)))
    sentences = {e["index"]: e["text"] for e in events if e["type"] == "response.sentence"}
    expected = "".join(sentences[i] for i in sent_indices).strip()
    assert done["text"] == expected
    assert len(done["text"]) < len(long_reply)
    # After response.done nothing of that response may arrive.
    await send(ws, {"type": "ping"})
    assert (await next_event(ws))["type"] == "pong"
    stored = await database_sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert stored.interrupted is True
    assert stored.text == expected
    assert "first_audio_ms" in stored.timings
    await ws.disconnect()


async def test_speech_during_reply_barges_in(token, nova, fake_openai, english_16k):
    long_reply = " ".join(f"Part {n} of a long answer." for n in range(1, 40))
    fake_openai.script(Reply(long_reply, token_delay=0.05), "Yes, coffee.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "Talk for a while"})
    seen = await events_until(ws, "<binary>", timeout=30)
    response_id = next(e for e in seen if e["type"] == "response.started")["response_id"]
    frame = 16000 * 2 // 25
    for position in range(0, len(english_16k), frame):
        await ws.send_to(bytes_data=english_16k[position : position + frame])
    await ws.send_to(bytes_data=b"\x00\x00" * 8000)
    await send(ws, {"type": "input_audio.commit"})
    after = await events_until(ws, "response.done", timeout=30)
    done = after[-1]
    assert done["response_id"] == response_id and done["interrupted"] is True
    barge_in = ("transcript.partial", "input_audio.speech_started")  # without / with VAD
    partial_at = next(i for i, e in enumerate(after) if e["type"] in barge_in)
    late_audio = [
        e
        for e in after[partial_at:]
        if e["type"] == "response.audio" and e["response_id"] == response_id
    ]
    assert late_audio == []
    # response.done and its metrics leave together; the new turn follows.
    metrics = await next_event(ws)
    assert (metrics["type"], metrics["response_id"]) == ("metrics", response_id)
    rest = await events_until(ws, "metrics", timeout=60)
    assert any(e["type"] == "response.started" for e in rest)
    assert any(e["type"] == "transcript.final" for e in rest)
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="assistant").order_by("created_at"))
    )()
    assert stored[0].interrupted is True
    assert stored[0].text == done["text"]
    await ws.disconnect()


async def test_model_failure_mid_stream_is_reported_and_stored(token, nova, fake_openai):
    fake_openai.script(Reply("First sentence here. Second one never ends", cut_after=4))
    ws = await connect(token)
    await start_session(ws, "nova")
    events = await typed_turn(ws, "Go")
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "llm_failed" and error["fatal"] is False
    done = next(e for e in events if e["type"] == "response.done")
    assert done["error"]
    stored = await database_sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert stored.error
    assert stored.text.startswith("First sentence here.")
    await send(ws, {"type": "ping"})
    assert (await next_event(ws))["type"] == "pong"
    await ws.disconnect()


async def test_tts_failure_still_delivers_text(token, nova, fake_openai, settings):
    settings.TTS_ENGINES = ["edge"]  # Unreachable offline: every sentence fails to synthesise.
    fake_openai.script("Only text this time.")
    ws = await connect(token)
    await start_session(ws, "nova")
    events = await typed_turn(ws, "Hi")
    assert [e["code"] for e in events if e["type"] == "error"] == ["tts_failed"]
    assert not audio_pairs(events)
    done = next(e for e in events if e["type"] == "response.done")
    assert done["text"] == "Only text this time." and done["interrupted"] is False
    await ws.disconnect()


async def test_turn_rate_limit(token, nova, fake_openai, settings):
    settings.WS_TURNS_PER_MINUTE = 1
    fake_openai.script("One.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await typed_turn(ws, "first")
    await send(ws, {"type": "input_text", "text": "second"})
    event = await next_event(ws)
    assert (event["type"], event["code"]) == ("error", "rate_limited")
    count = await database_sync_to_async(Message.objects.filter(role="user").count)()
    assert count == 1
    await ws.disconnect()


async def test_text_too_long_stores_nothing(token, nova, settings):
    settings.WS_MAX_TEXT_CHARS = 10
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "x" * 11})
    event = await next_event(ws)
    assert event["code"] == "text_too_long"
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ws.disconnect()


async def test_odd_sized_audio_frame_is_refused(token, nova):
    ws = await connect(token)
    await start_session(ws, "nova")
    await ws.send_to(bytes_data=b"\x00\x00\x00")
    event = await next_event(ws)
    assert event["code"] == "bad_audio"
    await ws.disconnect()


async def test_session_end_ends_conversation_and_closes(token, nova, fake_openai):
    fake_openai.script("Bye.", "Memory: likes goodbyes.")
    ws = await connect(token)
    await start_session(ws, "nova")
    events = await typed_turn(ws, "Goodbye")
    conversation_id = events[-2]["conversation_id"]
    assert (
        conversation_id
        == await database_sync_to_async(lambda: str(Conversation.objects.get().id))()
    )
    await send(ws, {"type": "session.end"})
    ended = await next_event(ws)
    assert ended == {"type": "session.ended", "conversation_id": conversation_id}
    assert await next_event(ws) == {"type": "<close>", "code": 1000}
    conversation = await database_sync_to_async(Conversation.objects.get)()
    assert conversation.ended_at is not None
    assert conversation.channel == "ws"


async def test_session_continues_a_conversation(token, nova, fake_openai):
    fake_openai.script("First.", "Second.")
    ws = await connect(token)
    await start_session(ws, "nova")
    await typed_turn(ws, "one")
    await ws.disconnect()
    conversation = await database_sync_to_async(Conversation.objects.get)()
    ws = await connect(token)
    started = await start_session(ws, "nova", conversation=str(conversation.id))
    assert started["conversation_id"] == str(conversation.id)
    await typed_turn(ws, "two")
    assert await database_sync_to_async(Conversation.objects.count)() == 1
    history = fake_openai.chat_requests[-1].messages
    assert any(m["content"] == "First." for m in history)
    await ws.disconnect()


async def test_disconnect_mid_reply_stores_partial(token, nova, fake_openai):
    fake_openai.script(Reply(" ".join(["Word."] * 200), token_delay=0.02))
    ws = await connect(token)
    await start_session(ws, "nova")
    await send(ws, {"type": "input_text", "text": "Keep talking"})
    await events_until(ws, "response.text.delta", timeout=20)
    await ws.disconnect()
    for _ in range(50):
        stored = await database_sync_to_async(
            lambda: Message.objects.filter(role="assistant").first()
        )()
        if stored is not None:
            break
        await asyncio.sleep(0.1)
    assert stored is not None and stored.interrupted is True


async def observe_and_talk(token, fake_openai) -> list[dict]:
    fake_openai.script("Observed reply.")
    observer = WebsocketCommunicator(application, f"/ws/observe/nova/?token={token}")
    assert (await observer.connect())[0]
    assert (await observer.receive_json_from())["type"] == "observe.started"
    ws = await connect(token)
    started = await start_session(ws, "nova")
    await typed_turn(ws, "Can you see me?")
    seen = []
    while True:
        event = await observer.receive_json_from(timeout=10)
        seen.append(event)
        if event["type"] == "response.done":
            break
    await ws.disconnect()
    await observer.disconnect()
    assert {event["session_id"] for event in seen} == {started["session_id"]}
    return seen


async def test_observer_sees_transcripts_and_replies(token, nova, fake_openai):
    seen = await observe_and_talk(token, fake_openai)
    kinds = [event["type"] for event in seen]
    assert kinds[:3] == ["session.started", "transcript.final", "response.started"]
    assert "response.text.delta" in kinds and "response.sentence" in kinds
    assert "response.audio" not in kinds
    assert seen[-1]["text"] == "Observed reply."


@pytest.mark.redis
async def test_observer_over_real_redis(token, nova, fake_openai, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "voz-test"},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        seen = await observe_and_talk(token, fake_openai)
    finally:
        channel_layers.backends.clear()
    assert seen[-1]["type"] == "response.done"
    assert seen[-1]["text"] == "Observed reply."
