"""Which STT engine serves a language: settings order, skipping engines that cannot serve it."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from audio_pipeline.models_download import installed_model_dir

from .base import SpeechRecognizer, SttUnavailable

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()
SPHINX_LANGUAGES = ("en",)


def _candidates(language: str) -> list[str]:
    tag = language.lower()
    return [tag, tag.split("-")[0]] if "-" in tag else [tag]


def engines_for(language: str) -> list[str]:
    for tag in _candidates(language):
        if tag in settings.STT_ENGINES_BY_LANGUAGE:
            return settings.STT_ENGINES_BY_LANGUAGE[tag]
    return settings.STT_ENGINES


def vosk_model_path(language: str) -> Path | None:
    """VOSK_MODEL_<LANG>, else VOSK_MODEL_PATH, else a model fetched by `download_models`."""
    for tag in _candidates(language):
        if tag in settings.VOSK_MODELS:
            return Path(settings.VOSK_MODELS[tag])
    if settings.VOSK_MODEL_PATH:
        return Path(settings.VOSK_MODEL_PATH)
    for tag in _candidates(language):
        found = installed_model_dir(tag)
        if found:
            return found
    return None


def why_not(engine: str, language: str) -> str | None:
    """None when `engine` can serve `language`, else the reason it cannot."""
    if engine == "vosk":
        path = vosk_model_path(language)
        if path is None:
            return f"no Vosk model for '{language}' (set VOSK_MODEL_{language.upper()} or run download_models)"
        if not path.is_dir():
            return f"Vosk model directory {path} does not exist"
        return None
    if engine == "pocketsphinx":
        if language.lower().split("-")[0] not in SPHINX_LANGUAGES:
            return "PocketSphinx's bundled model is English only"
        return None
    if engine == "whisper":
        from . import whisper_engine

        return whisper_engine.why_not(language)
    return f"unknown STT engine '{engine}'"


def effective_engine(language: str) -> tuple[str | None, dict[str, str]]:
    """The engine that would serve `language`, and why each earlier one was skipped."""
    skipped: dict[str, str] = {}
    for engine in engines_for(language):
        reason = why_not(engine, language)
        if reason is None:
            return engine, skipped
        skipped[engine] = reason
    return None, skipped


def create_recognizer(language: str, sample_rate: int | None = None) -> SpeechRecognizer:
    """A fresh recogniser for one session in `language` (models are loaded once and shared)."""
    rate = sample_rate or settings.STT_SAMPLE_RATE
    engine, skipped = effective_engine(language)
    for name, reason in skipped.items():
        if (name, language) not in _warned:
            _warned.add((name, language))
            log.warning("STT: %s skipped for '%s': %s; falling back.", name, language, reason)
    if engine == "vosk":
        from .vosk_engine import VoskRecognizer

        return VoskRecognizer(vosk_model_path(language), rate)
    if engine == "pocketsphinx":
        from .sphinx_engine import SphinxRecognizer

        return SphinxRecognizer(rate)
    if engine == "whisper":
        from .whisper_engine import WhisperRecognizer

        return WhisperRecognizer(language, rate)
    raise SttUnavailable(
        f"No STT engine for language '{language}': "
        + "; ".join(f"{k}: {v}" for k, v in skipped.items())
    )


def readiness() -> dict:
    """Effective STT engine per configured language, for /readyz."""
    languages = {code for code, _ in settings.LANGUAGES} | set(settings.VOSK_MODELS)
    details = {}
    for language in sorted(languages):
        engine, skipped = effective_engine(language)
        details[language] = {"engine": engine, "skipped": skipped}
        if engine == "whisper":
            from .whisper_engine import model_name_for

            details[language]["model"] = model_name_for(language)
    return details
