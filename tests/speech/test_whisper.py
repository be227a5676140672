"""Whisper offline (faster-whisper, int8) with models from packages: tiny.en and base."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from audio_pipeline.models_packaged import silero_vad_path
from audio_pipeline.stt import AsyncTranscriber, create_recognizer, selection
from audio_pipeline.stt.whisper_engine import WhisperRecognizer, load_model, model_dir

from .hearing_samples import espeak, noise, piper, silence, word_error

ENGLISH = "The weather is nice today and I would like a cup of coffee."


def feed(recognizer, pcm: bytes, chunk: int = 3200):
    out = []
    for offset in range(0, len(pcm), chunk):
        out += recognizer.accept(pcm[offset : offset + chunk])
    return out


def test_english_partials_while_speaking_then_a_final_at_the_pause():
    recognizer = WhisperRecognizer("en", partial_interval_ms=800, endpoint_ms=500)
    assert recognizer.model_name == "tiny.en"
    speech = piper(ENGLISH)
    results = feed(recognizer, silence(0.5) + speech + silence(1.0))
    partials = [t for t in results if not t.final]
    finals = [t for t in results if t.final]
    assert partials, "partials while the user speaks"
    assert all(not p.words for p in partials)
    assert len(finals) == 1 and word_error(ENGLISH, finals[0].text) <= 0.1, finals
    words = finals[0].words
    assert [w.word for w in words] == finals[0].text.split()
    assert 0.4 <= words[0].start < words[-1].end <= 0.5 + len(speech) / 32000 + 0.2
    assert all(0 < w.conf <= 1 for w in words)
    assert recognizer.finish().text == "", "nothing left after the final"


def test_a_busy_process_skips_partials_but_never_a_final():
    """Another session's decode running (the gate full): no partial re-decode, same final."""
    from audio_pipeline.stt.whisper_engine import decode_gate

    recognizer = WhisperRecognizer("en", partial_interval_ms=300, endpoint_ms=500)
    skipped = decode_gate.skipped
    with decode_gate.final():  # as if another session were decoding its final
        results = feed(recognizer, silence(0.5) + piper(ENGLISH) + silence(1.0))
    assert [t.final for t in results] == [True]  # no partials, the final all the same
    assert word_error(ENGLISH, results[0].text) <= 0.1
    assert decode_gate.skipped > skipped
    assert decode_gate.running == 0
    results = feed(recognizer, silence(0.3) + piper(ENGLISH) + silence(1.0))
    assert [t for t in results if not t.final], "partials again once the process is free"


def test_the_final_reuses_the_decode_made_when_speech_paused():
    recognizer = WhisperRecognizer("en", partial_interval_ms=10_000, endpoint_ms=600)
    feed(recognizer, silence(0.3) + piper("Hello there, my friend.") + silence(0.3))
    decoded_during_pause = recognizer.decodes
    assert decoded_during_pause >= 1
    results = feed(recognizer, silence(0.6))
    assert [t.final for t in results] == [True]
    assert recognizer.decodes == decoded_during_pause, "no decode after the endpoint"


def test_finish_flushes_speech_without_trailing_silence():
    recognizer = WhisperRecognizer("en", partial_interval_ms=10_000)
    feed(recognizer, silence(0.3) + piper("Hello there, my friend."))
    final = recognizer.finish()
    assert final.final and word_error("hello there my friend", final.text) <= 0.25


def test_silence_and_noise_cost_no_decode():
    recognizer = WhisperRecognizer("en")
    assert feed(recognizer, silence(1.5) + noise(1.5)) == []
    assert recognizer.finish().text == ""
    assert recognizer.decodes == 0


def test_spanish_with_the_multilingual_base_model():
    recognizer = WhisperRecognizer("es", partial_interval_ms=10_000, endpoint_ms=700)
    assert recognizer.model_name == "base"
    text = "Buenos días, quiero un café con leche."
    results = feed(recognizer, silence(0.3) + espeak(text) + silence(1.0))
    finals = [t.text for t in results if t.final]
    assert finals and word_error(text, " ".join(finals)) <= 0.5, finals


async def test_async_transcriber_resamples_48k_input():
    from audio_pipeline.formats import resample_pcm16

    transcriber = AsyncTranscriber(WhisperRecognizer("en"), input_rate=48000)
    try:
        speech = resample_pcm16(silence(0.3) + piper("Hello there, my friend."), 16000, 48000)
        for offset in range(0, len(speech), 9600):
            await transcriber.accept(speech[offset : offset + 9600])
        final = await transcriber.finish()
        assert "friend" in final.text.lower()
        assert transcriber.engine == "whisper"
    finally:
        transcriber.close()


def test_models_are_loaded_once_and_only_at_16k():
    assert load_model(model_dir("tiny.en")) is load_model(model_dir("tiny.en"))
    assert load_model(model_dir("tiny.en")).model.num_workers == 2  # WHISPER_WORKERS
    with pytest.raises(ValueError, match="16000"):
        WhisperRecognizer("en", 8000)


def test_sessions_finals_decoded_at_once_each_get_their_own_words():
    """Two decodes run in the shared model at once (WHISPER_WORKERS): each session still gets
    the words of its own audio."""
    texts = [ENGLISH, "Tell me a story about the ocean and the stars."]
    recognizers = [
        WhisperRecognizer("en", partial_interval_ms=60_000, endpoint_ms=500) for _ in texts
    ]
    audio = [silence(0.3) + piper(text) for text in texts]
    for recognizer, pcm in zip(recognizers, audio, strict=True):
        feed(recognizer, pcm)
    with ThreadPoolExecutor(max_workers=2) as pool:
        finals = list(pool.map(lambda r: r.finish(), recognizers))
    for text, final in zip(texts, finals, strict=True):
        assert word_error(text, final.text) <= 0.15, (text, final.text)


def test_default_chain_per_language(settings, tmp_path, korean_model_path):
    # The recogniser's own VAD reads its model from MODELS_DIR too: keep that one.
    (tmp_path / "silero_vad.onnx").symlink_to(silero_vad_path())
    settings.STT_ENGINES = ["vosk", "whisper", "pocketsphinx"]
    settings.VOSK_MODELS, settings.VOSK_MODEL_PATH, settings.MODELS_DIR = {}, "", tmp_path
    assert selection.effective_engine("en")[0] == "whisper"
    assert selection.effective_engine("es-MX")[0] == "whisper"
    details = selection.readiness()
    assert details["en"]["model"] == "tiny.en" and details["es"]["model"] == "base"
    assert "vosk" in details["es"]["skipped"]
    assert create_recognizer("es").model_name == "base"
    settings.VOSK_MODELS = {"ko": str(korean_model_path)}
    assert selection.effective_engine("ko")[0] == "vosk", "Vosk first where its model is"
    settings.WHISPER_MODELS = {"en": "tiny.en", "fr": "tiny.en"}
    engine, skipped = selection.effective_engine("fr")
    assert engine is None and "English only" in skipped["whisper"]
    settings.STT_ENGINES = ["vosk", "pocketsphinx"]
    assert selection.effective_engine("en")[0] == "pocketsphinx"
