"""Memory per session: speech models shared per process (audio_pipeline/stt/cache.py), and closed
sessions freed by reference counting alone (no reference cycles waiting for a full GC)."""

from __future__ import annotations

import gc
import types

import pytest

from audio_pipeline.stt import cache
from audio_pipeline.stt.sphinx_engine import SphinxRecognizer
from tests.speech_samples import key_words_found
from tests.voice_helpers import connect, events_until, send, start_session
from voice.gone_watch import gone_watch

WORDS = ("weather", "nice", "today", "coffee")


@pytest.fixture(autouse=True)
def _empty_pool(settings):
    settings.STT_SPHINX_IDLE_DECODERS = 2
    cache.clear()
    yield
    cache.clear()


def recognise(recognizer: SphinxRecognizer, pcm: bytes) -> str:
    finals = [t.text for t in recognizer.accept(pcm) if t.final]
    return " ".join([*finals, recognizer.finish().text])


def test_a_closed_recogniser_gives_its_decoder_to_the_next_without_a_gc(english_16k):
    gc.disable()
    try:
        first = SphinxRecognizer(16000)
        decoder = first._decoder
        first.accept(english_16k[: len(english_16k) // 2])  # Left mid-utterance.
        before = cache.stats()["sphinx_decoders"]
        del first  # Reference counting alone returns the decoder.
        second = SphinxRecognizer(16000)
        after = cache.stats()["sphinx_decoders"]
    finally:
        gc.enable()
    assert second._decoder is decoder
    assert after["reused"] == before["reused"] + 1 and after["built"] == before["built"]
    assert key_words_found(recognise(second, english_16k), WORDS, 3)


def test_the_pool_keeps_at_most_the_configured_idle_decoders(english_16k):
    recognizers = [SphinxRecognizer(16000) for _ in range(3)]
    assert cache.stats()["sphinx_decoders"]["idle"] == 0
    del recognizers
    assert cache.stats()["sphinx_decoders"]["idle"] == 2


def live_session_objects() -> list[object]:
    """Objects of the voice loop's own classes (consumers.voice, voice.*) that are alive."""

    def ours(module: object) -> bool:
        return isinstance(module, str) and (
            module == "consumers.voice" or module.startswith("voice.")
        )

    return [o for o in gc.get_objects() if ours(type(o).__module__)]


def describe_referrers(obj: object, depth: int = 3) -> str:
    """Who keeps `obj` alive (for the failure message): types of referrers, a few levels up."""
    lines, frontier = [], [obj]
    for level in range(depth):
        nxt = []
        for target in frontier:
            for ref in gc.get_referrers(target):
                if ref is frontier or isinstance(ref, types.FrameType):
                    continue
                lines.append(
                    f"{'  ' * level}{type(ref).__qualname__} -> {type(target).__qualname__}"
                )
                nxt.append(ref)
        frontier = nxt[:5]
    return "\n".join(lines[:40])


@pytest.fixture
def nova(user, make_character, make_instance):
    character = make_character(
        user, name="Nova", description="A captain.", language="en", voices={}
    )
    return make_instance(user, "nova", character=character)


@pytest.mark.django_db(transaction=True)
async def test_a_closed_voice_session_is_freed_without_a_full_gc(token, nova, fake_openai):
    fake_openai.script("Fine weather. Coffee is ready.")
    gone_watch()  # The event loop's one watch of deleted instances is the loop's, not a session's.
    gc.collect()
    baseline = len(live_session_objects())
    gc.disable()
    try:
        ws = await connect(token)
        await start_session(ws, "nova", output_audio={"format": "pcm16"})
        await send(ws, {"type": "input_text", "text": "Hello there"})
        events = await events_until(ws, "metrics", timeout=60)
        assert events[-1]["type"] == "metrics"
        during = len(live_session_objects())
        await ws.disconnect()
        await ws.wait(5)
        del ws, events
        left = live_session_objects()
        report = describe_referrers(left[0]) if len(left) > baseline else ""
        count = len(left)
        del left
    finally:
        gc.enable()
    assert during > baseline  # The count does see a live session.
    assert count == baseline, f"a closed session waits for the GC; kept alive by:\n{report}"


def test_readyz_details_show_the_speech_model_cache():
    from realtime import readiness

    details = readiness.collect()["speech_models"]
    assert set(details) == {
        "vosk_models",
        "whisper_models",
        "tts_workers",
        "sphinx_decoders",
    }
    assert set(details["sphinx_decoders"]) == {"built", "reused", "idle"}
