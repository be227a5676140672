"""TTS engines and the fallback chain, with real engines; edge-tts is kept off the internet by
pointing its proxy at local ports (refused, or accepted and never answered)."""

from __future__ import annotations

import asyncio
import time

import pytest

from audio_pipeline.formats import decode_audio, encode
from audio_pipeline.tts import (
    ENGINES,
    TtsUnavailable,
    UnknownVoice,
    breaker,
    engines_report,
    synthesize_with_fallback,
    voice_map_for,
)
from audio_pipeline.tts.espeak import parse_wav_pcm16


async def collect(stream) -> bytes:
    return b"".join([chunk.data async for chunk in stream])


async def test_piper_streams_pcm16_at_22050(english_text):
    chunks = [
        c
        async for c in ENGINES["piper"].synthesize(
            "One sentence. And another one.", language="en", voice=None
        )
    ]
    assert len(chunks) == 2, "Piper yields audio per sentence"
    assert {(c.format, c.sample_rate) for c in chunks} == {("pcm16", 22050)}
    assert sum(len(c.data) for c in chunks) / 2 / 22050 > 1.0


async def test_espeak_speaks_spanish_and_english():
    assert all(ENGINES["espeak"].supports(tag) for tag in ("es", "es-MX", "en", "en-GB", "ko"))
    assert not ENGINES["espeak"].supports("xx")
    for language in ("es", "en", "ko"):
        chunks = [
            c
            async for c in ENGINES["espeak"].synthesize("Hola amigo", language=language, voice=None)
        ]
        assert chunks[0].format == "pcm16" and chunks[0].sample_rate == 22050
        assert len(chunks[0].data) > 22050  # more than half a second


async def test_espeak_in_process_and_as_a_program_say_the_same(settings):
    """The library and the program are the same synthesiser: the same voice, the same speech
    length (the program adds ~0.3 s of trailing silence), and voices switch per call."""
    from audio_pipeline.tts import espeak as espeak_module

    text = "The stars are bright tonight."
    spoken = {}
    for in_process in (True, False):
        settings.TTS_ESPEAK_IN_PROCESS = in_process
        for language in ("en", "es"):
            chunks = [
                c async for c in ENGINES["espeak"].synthesize(text, language=language, voice=None)
            ]
            spoken[in_process, language] = b"".join(c.data for c in chunks).rstrip(b"\0")
    assert espeak_module._library_failed == "", "libespeak-ng was not used"
    assert espeak_module.espeak_pool().stats()["alive"] >= 1
    for language in ("en", "es"):
        library, program = spoken[True, language], spoken[False, language]
        assert 0.9 < len(library) / len(program) < 1.1, (len(library), len(program))
    assert spoken[True, "en"] != spoken[True, "es"], "the voice did not switch"


async def test_espeak_in_process_refuses_an_unknown_voice_and_goes_on(settings):
    from audio_pipeline.tts import TtsError

    settings.TTS_ESPEAK_IN_PROCESS = True
    with pytest.raises(TtsError, match="no voice"):
        await collect(ENGINES["espeak"].synthesize("Hi.", language="en", voice="zz-nope"))
    assert len(await collect(ENGINES["espeak"].synthesize("Hi.", language="en", voice=None))) > 0


async def test_espeak_in_process_serves_concurrent_sentences_in_turn(settings):
    """The library's state is global: concurrent calls must each get their own whole audio (its
    length as when alone; espeak varies a call's samples slightly, so lengths are compared)."""
    settings.TTS_ESPEAK_IN_PROCESS = True
    texts = ["One.", "Two sentences are longer than one.", "Three."] * 3
    voices = ["en-us", "es", "ko"] * 3
    alone = [
        await collect(ENGINES["espeak"].synthesize(t, language="en", voice=v))
        for t, v in zip(texts, voices, strict=True)
    ]
    together = await asyncio.gather(
        *(
            collect(ENGINES["espeak"].synthesize(t, language="en", voice=v))
            for t, v in zip(texts, voices, strict=True)
        )
    )
    for mine, reference in zip(together, alone, strict=True):
        assert 0.85 < len(mine) / len(reference) < 1.15, (len(mine), len(reference))


def test_espeak_library_that_cannot_load_raises_oserror():
    from audio_pipeline.tts.espeak_library import EspeakLibrary

    with pytest.raises(OSError):
        EspeakLibrary("no-such-espeak-library").load()


def test_parse_wav_pcm16_reads_streamed_headers():
    wav = bytearray(encode(bytes(4000), 16000, "wav"))
    wav[4:8] = b"\xff\xff\xff\xff"  # espeak-ng --stdout leaves sizes unset
    pcm, rate = parse_wav_pcm16(bytes(wav))
    assert rate == 16000 and len(pcm) == 4000


async def test_refused_edge_falls_over_to_piper_then_the_breaker_skips_edge(settings):
    settings.TTS_CIRCUIT_SECONDS = 60
    stream = await synthesize_with_fallback("Hello there.", language="en")
    assert stream.engine == "piper"
    assert "edge" in stream.skipped and "circuit" not in stream.skipped["edge"]
    assert len(await collect(stream)) > 10_000
    assert not breaker("edge").allow()

    started = time.monotonic()
    again = await synthesize_with_fallback("Hello again.", language="en")
    assert again.engine == "piper"
    assert again.skipped["edge"].startswith("circuit open")
    assert time.monotonic() - started < 2.0
    await collect(again)


async def test_spanish_falls_over_to_espeak(settings):
    stream = await synthesize_with_fallback(
        "¿Qué tal?", language="es", voices={"edge": "es-MX-DaliaNeural"}
    )
    assert stream.engine == "espeak"
    assert stream.skipped["piper"] == "does not speak 'es'"
    assert (
        decode_audio(encode(await collect(stream), 22050, "wav"), target_rate=16000).duration_s
        > 0.3
    )


async def test_an_edge_that_accepts_and_never_answers_is_cut_by_the_timeouts(settings):
    async def hang(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings.TTS_EDGE_PROXY = f"http://127.0.0.1:{port}"
    settings.TTS_CONNECT_TIMEOUT = 0.5
    settings.TTS_CHUNK_TIMEOUT = 0.5
    started = time.monotonic()
    try:
        stream = await synthesize_with_fallback("Hello.", language="en")
    finally:
        server.close()
    assert time.monotonic() - started < 4.0
    assert stream.engine == "piper"
    assert "edge" in stream.skipped
    await collect(stream)


async def test_breaker_closes_after_its_time(settings):
    settings.TTS_CIRCUIT_SECONDS = 1.0
    stream = await synthesize_with_fallback("Hi.", language="en", engines=["edge", "espeak"])
    assert not breaker("edge").allow()
    await collect(stream)
    await asyncio.sleep(1.05)
    assert breaker("edge").allow()


async def test_every_engine_unusable_raises_with_reasons(settings):
    settings.TTS_ESPEAK_BINARY = "no-such-espeak"
    with pytest.raises(TtsUnavailable) as info:
        await synthesize_with_fallback(
            "Hola.", language="es", engines=["edge", "piper", "espeak", "nope"]
        )
    message = str(info.value)
    assert "piper: does not speak 'es'" in message
    assert "no-such-espeak not found" in message
    assert "nope: unknown engine" in message


def test_per_language_chain_from_settings(settings):
    from audio_pipeline.tts.chain import chain_for

    settings.TTS_ENGINES_BY_LANGUAGE = {"es": ["espeak"]}
    assert chain_for("es-MX") == ["espeak"]
    assert chain_for("en") == settings.TTS_ENGINES


def test_voice_names_map_to_their_engines():
    assert voice_map_for("es-ES-AlvaroNeural") == {"edge": "es-ES-AlvaroNeural"}
    assert voice_map_for("en_US-joe-medium") == {"piper": "en_US-joe-medium"}
    assert voice_map_for("espeak:es") == {"espeak": "es"}
    with pytest.raises(UnknownVoice):
        voice_map_for("Nobody")
    with pytest.raises(UnknownVoice):
        voice_map_for("piper:es_ES-nobody")


def test_engines_report_lists_every_engine_with_reasons(settings):
    breaker("edge").record_failure("OSError: refused")
    report = {e["name"]: e for e in engines_report()}
    assert set(report) == {"edge", "piper", "espeak"}
    assert report["edge"]["available"] is False and "circuit open" in report["edge"]["reason"]
    assert report["piper"]["available"] is True
    assert [v["name"] for v in report["piper"]["voices"]] == ["en_US-joe-medium"]
    assert any(v["name"] == "es" for v in report["espeak"]["voices"])


def test_espeak_library_hands_a_sentence_over_in_one_or_two_blocks():
    """Each block of samples is a callback into Python: with espeak's default 60 ms blocks a
    2 s sentence took ~35. (Run here in the test process, on a text known to be safe.)"""
    from audio_pipeline.tts.espeak_library import EspeakLibrary

    library = EspeakLibrary()
    library.load()
    before = library.callbacks
    [(pcm, rate)] = library.synthesize("Aye, the stars are bright tonight over the bridge.", "en")
    assert len(pcm) / 2 / rate > 1.5
    assert library.callbacks - before <= 3, library.callbacks - before
