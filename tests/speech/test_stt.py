"""Real recognisers: Vosk (Korean model from PyPI, espeak-ng speech) and PocketSphinx (Piper)."""

from __future__ import annotations

import asyncio
import difflib
import itertools
import logging

import pytest

from audio_pipeline.formats import encode, resample_pcm16
from audio_pipeline.stt import (
    AsyncTranscriber,
    SttUnavailable,
    Transcript,
    create_recognizer,
    selection,
)
from audio_pipeline.stt.sphinx_engine import SphinxRecognizer
from audio_pipeline.stt.vosk_engine import VoskRecognizer, load_model

KEY_WORDS = ("weather", "nice", "today", "like", "cup", "coffee")


def feed(recognizer, pcm: bytes, chunk_bytes: int) -> tuple[list[Transcript], Transcript]:
    results: list[Transcript] = []
    for offset in range(0, len(pcm), chunk_bytes):
        results += recognizer.accept(pcm[offset : offset + chunk_bytes])
    return results, recognizer.finish()


def all_final_text(results: list[Transcript], last: Transcript) -> str:
    return " ".join(t.text for t in [*results, last] if t.final and t.text)


@pytest.fixture(scope="module")
def vosk_ko(korean_model_path, korean_16k):
    """The shared Korean model, warmed up: the first decode with a fresh model can differ in a
    word from later ones (the model's lookahead graph is built lazily and then cached)."""
    model = load_model(korean_model_path)
    feed(VoskRecognizer(korean_model_path, 16000), korean_16k, 3200)
    return model


def test_vosk_streams_partials_then_finals_at_endpoints(vosk_ko, korean_model_path, korean_16k):
    recognizer = VoskRecognizer(korean_model_path, 16000)
    results, last = feed(recognizer, korean_16k, 3200)
    partials = [t for t in results if not t.final]
    finals = [t for t in results if t.final]
    assert len(partials) >= 3
    assert all(a.text != b.text for a, b in itertools.pairwise(partials))
    assert finals, "an endpoint in the silence between phrases gives a final before finish()"
    text = all_final_text(results, last)
    assert len(text.replace(" ", "")) >= 6
    words = [w for t in [*finals, last] for w in t.words]
    assert words and all(0 <= w.start < w.end <= len(korean_16k) / 32000 + 0.1 for w in words)
    assert all(0.0 <= w.conf <= 1.0 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_vosk_final_text_does_not_depend_on_chunk_size(vosk_ko, korean_model_path, korean_16k):
    # Vosk 0.3.45 is not reproducible run to run, even with identical frames fed through its raw
    # API (measured: 3-8 distinct transcripts in 10 runs of this espeak-ng Korean, which is
    # gibberish to the model, so close calls flip). Chunking is therefore checked for
    # near-identical text here, and exactly with the deterministic PocketSphinx below; our code
    # feeds Vosk the same 100 ms frames whatever the chunk size. Seen on unchanged code: a ratio
    # of 0.69 (CI-like load), so 0.6; lost or repeated audio falls far below it.
    texts = []
    for seconds in (0.01, 0.1, 1.0):
        recognizer = VoskRecognizer(korean_model_path, 16000)
        results, last = feed(recognizer, korean_16k, int(16000 * seconds) * 2)
        assert any(not t.final for t in results) and any(t.final for t in results)
        texts.append(all_final_text(results, last).replace(" ", ""))
    for other in texts[1:]:
        assert difflib.SequenceMatcher(a=texts[0], b=other).ratio() >= 0.6, (texts[0], other)
    assert all(len(text) >= 10 for text in texts)


def test_sphinx_final_text_is_identical_for_any_chunk_size(english_16k):
    texts = set()
    for seconds in (0.01, 0.03, 0.1, 0.25, 1.0):
        results, last = feed(SphinxRecognizer(16000), english_16k, int(16000 * seconds) * 2)
        texts.add(all_final_text(results, last))
    assert len(texts) == 1 and next(iter(texts))


def test_sphinx_finish_mid_speech_on_a_frame_boundary_gives_the_final(english_16k):
    """A commit while the user is still speaking, with the audio ending exactly on an
    endpointer frame: PocketSphinx's end_stream(b"") raised IndexError (seen in the bench)."""
    recognizer = SphinxRecognizer(16000)
    frame = recognizer._frame_bytes
    cut = (len(english_16k) * 2 // 3) // frame * frame  # mid-speech, whole frames only
    recognizer.accept(english_16k[:cut])
    assert recognizer._in_utt and recognizer._pending == b""
    final = recognizer.finish()
    assert final.final and len(final.text.split()) >= 2, final


def test_sphinx_commit_where_the_endpointer_has_no_speech_left(english_16k):
    """A commit (finish) where PocketSphinx's endpointer returns an empty buffer rather than
    None: process_raw(b"") raised IndexError and the turn was lost (seen in the bench's quick
    sweep at two PocketSphinx sessions: a commit with a part-frame tail near the speech's end)."""
    from pocketsphinx import Endpointer

    stream = english_16k + b"\0" * 16000
    cuts = []
    for cut in range(len(english_16k) - 16000, len(stream), 2 * 37):
        endpointer = Endpointer(sample_rate=16000)
        whole = cut // endpointer.frame_bytes * endpointer.frame_bytes
        for offset in range(0, whole, endpointer.frame_bytes):
            endpointer.process(stream[offset : offset + endpointer.frame_bytes])
        if stream[whole:cut] and endpointer.end_stream(stream[whole:cut]) == b"":
            cuts.append(cut)
    assert cuts, "the library no longer returns b'' here: choose another case"
    for cut in cuts[:3]:
        recognizer = SphinxRecognizer(16000)
        results = recognizer.accept(stream[:cut])
        final = recognizer.finish()
        text = " ".join([t.text for t in results if t.final] + [final.text])
        assert "coffee" in text, text
        assert recognizer.accept(english_16k[:3200]) is not None  # The stream goes on.


def test_vosk_model_is_loaded_once_and_shared(vosk_ko, korean_model_path):
    first = VoskRecognizer(korean_model_path, 16000)
    second = VoskRecognizer(str(korean_model_path) + "/", 16000)
    assert first._model is second._model is vosk_ko
    with pytest.raises(FileNotFoundError):
        load_model(korean_model_path.parent / "no-such-model")


def test_vosk_reset_forgets_buffered_audio(vosk_ko, korean_model_path, korean_16k):
    recognizer = VoskRecognizer(korean_model_path, 16000)
    recognizer.accept(korean_16k[: 16000 * 2 * 3])
    recognizer.reset()
    assert recognizer.finish().text == ""


def test_create_recognizer_uses_the_configured_vosk_model(settings, vosk_ko, korean_model_path):
    settings.VOSK_MODELS = {"ko": str(korean_model_path)}
    assert create_recognizer("ko").engine == "vosk"
    assert create_recognizer("ko-KR").engine == "vosk"
    assert selection.effective_engine("ko") == ("vosk", {})


async def test_async_transcriber_keeps_order_off_the_loop(settings, english_16k):
    direct_results, direct_last = feed(SphinxRecognizer(16000), english_16k, 1280)
    transcriber = AsyncTranscriber(SphinxRecognizer(16000))
    step = 1280  # 40 ms
    # Fire every chunk without awaiting in between: the single worker thread keeps order.
    batches = await asyncio.gather(
        *(transcriber.accept(english_16k[i : i + step]) for i in range(0, len(english_16k), step))
    )
    last = await transcriber.finish()
    transcriber.close()
    results = [t for batch in batches for t in batch]
    assert [(t.text, t.final) for t in results] == [(t.text, t.final) for t in direct_results]
    assert last == direct_last
    assert transcriber.engine == "pocketsphinx"


async def test_async_transcriber_resamples_a_48k_microphone(
    settings, vosk_ko, korean_model_path, korean_16k
):
    settings.VOSK_MODELS = {"ko": str(korean_model_path)}
    at_48k = resample_pcm16(korean_16k, 16000, 48000)
    transcriber = AsyncTranscriber(create_recognizer("ko"), input_rate=48000)
    step = 48000 * 2 // 10
    results = []
    for i in range(0, len(at_48k), step):
        results += await transcriber.accept(at_48k[i : i + step])
    last = await transcriber.finish()
    transcriber.close()
    assert any(not t.final for t in results)
    assert len(all_final_text(results, last).replace(" ", "")) >= 6


def test_pocketsphinx_recognises_piper_english(english_16k):
    recognizer = SphinxRecognizer(16000)
    results, last = feed(recognizer, english_16k, 1600)
    assert any(not t.final for t in results), "partials while speaking"
    text = all_final_text(results, last)
    heard = set(text.split())
    assert sum(w in heard for w in KEY_WORDS) >= 4, text
    words = [w for t in [*results, last] if t.final for w in t.words]
    assert [w.word for w in words] == text.split()
    assert all(w.start < w.end for w in words)


def test_pocketsphinx_gives_a_final_at_an_endpoint_and_resets(english_16k):
    silence = bytes(16000 * 2)
    recognizer = SphinxRecognizer(16000)
    results, _ = feed(recognizer, english_16k + silence + english_16k, 3200)
    assert any(t.final and t.text for t in results), "the pause ends an utterance"
    recognizer.reset()
    assert recognizer.finish().text == ""


def test_english_falls_back_to_pocketsphinx_and_logs_once(settings, caplog, tmp_path):
    settings.STT_ENGINES = ["vosk", "pocketsphinx"]  # without Whisper
    settings.VOSK_MODELS = {}
    settings.VOSK_MODEL_PATH = ""
    settings.MODELS_DIR = tmp_path
    selection._warned.clear()
    with caplog.at_level(logging.WARNING, logger="audio_pipeline.stt.selection"):
        assert create_recognizer("en").engine == "pocketsphinx"
        assert create_recognizer("en").engine == "pocketsphinx"
    warnings = [r for r in caplog.records if "vosk skipped" in r.getMessage()]
    assert len(warnings) == 1
    engine, skipped = selection.effective_engine("en")
    assert engine == "pocketsphinx" and "no Vosk model" in skipped["vosk"]


def test_missing_model_directory_is_reported(settings, tmp_path):
    settings.VOSK_MODELS = {"en": str(tmp_path / "missing")}
    assert "does not exist" in selection.effective_engine("en")[1]["vosk"]


def test_language_without_any_engine_is_refused(settings, tmp_path):
    settings.STT_ENGINES = ["vosk", "pocketsphinx"]  # without Whisper
    settings.VOSK_MODELS = {}
    settings.VOSK_MODEL_PATH = ""
    settings.MODELS_DIR = tmp_path
    with pytest.raises(SttUnavailable, match="English only"):
        create_recognizer("es")


def test_per_language_engine_order(settings):
    settings.STT_ENGINES_BY_LANGUAGE = {"en": ["pocketsphinx"]}
    assert selection.engines_for("en-GB") == ["pocketsphinx"]
    assert selection.engines_for("es") == settings.STT_ENGINES


def test_readiness_shows_the_effective_engine(settings, tmp_path, korean_model_path):
    from realtime import readiness

    settings.VOSK_MODELS = {"ko": str(korean_model_path)}
    settings.MODELS_DIR = tmp_path
    settings.VOSK_MODEL_PATH = ""
    details = readiness.collect()["stt"]
    assert details["ko"]["engine"] == "vosk"
    assert details["en"]["engine"] == "whisper" and details["en"]["model"] == "tiny.en"
    assert details["es"]["engine"] == "whisper" and details["es"]["model"] == "base"
    settings.STT_ENGINES = ["vosk", "pocketsphinx"]
    details = readiness.collect()["stt"]
    assert details["en"]["engine"] == "pocketsphinx"
    assert details["es"]["engine"] is None


def test_wav_helper_is_a_real_wav(english_speech):
    assert encode(english_speech[0], english_speech[1], "wav")[:4] == b"RIFF"


def test_pocketsphinx_word_times_continue_after_finish(english_16k):
    recognizer = SphinxRecognizer(16000)
    recognizer.accept(english_16k)
    first = recognizer.finish()
    recognizer.accept(english_16k)
    second = recognizer.finish()
    duration = len(english_16k) / 32000
    assert first.words and second.words
    assert second.words[0].start >= duration - 0.05
    assert second.words[-1].end <= 2 * duration + 0.1
