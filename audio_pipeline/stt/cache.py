"""Per-process speech models, shared by every session.

- Vosk: one `vosk.Model` per model path (`vosk_engine.load_model`); each session only adds its
  small `KaldiRecognizer`.
- Piper and libespeak-ng: loaded once in each of their worker processes
  (`tts.worker_pool`), not here; `stats()` counts those workers.
- PocketSphinx cannot share a model between decoders (each `Decoder` loads its own acoustic
  model, dictionary and search: ~50-90 MiB and 0.3-2 s of CPU here). Decoders are therefore
  pooled: a recogniser takes one and gives it back when it is closed or collected, so a new session
  reuses a closed session's decoder instead of building one. At most
  `STT_SPHINX_IDLE_DECODERS` idle decoders are kept; the rest are freed.

`stats()` feeds `/readyz` (`details.speech_models`).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_idle: dict[int, list[Any]] = defaultdict(list)  # sample rate (Hz) → idle pocketsphinx Decoders
_built = 0
_reused = 0


def sphinx_decoder(sample_rate: int) -> Any:
    """A PocketSphinx `Decoder` for `sample_rate` Hz: an idle one from the pool, else a new one
    (blocking, seconds: call off the event loop). Give it back with `sphinx_release`."""
    global _built, _reused
    with _lock:
        if _idle[sample_rate]:
            _reused += 1
            return _idle[sample_rate].pop()
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=sample_rate)
    with _lock:
        _built += 1
    return decoder


def sphinx_release(decoder: Any, sample_rate: int, in_utterance: bool) -> None:
    """Return a decoder to the pool (ending its utterance), or free it if the pool is full.

    Its feature state (the cepstral mean it adapted to the last speaker) is reset, so the next
    session decodes exactly as with a new decoder."""
    try:
        if in_utterance:
            decoder.end_utt()
        decoder.reinit_feat()
    except RuntimeError:
        return  # A decoder in an unknown state is not reused.
    with _lock:
        if len(_idle[sample_rate]) < settings.STT_SPHINX_IDLE_DECODERS:
            _idle[sample_rate].append(decoder)


def warm_up() -> list[str]:
    """Load the configured Vosk models now (before serving), not in the first session; returns
    the model paths loaded. Blocking: seconds per model."""
    from audio_pipeline.stt import vosk_engine

    paths = {*settings.VOSK_MODELS.values(), settings.VOSK_MODEL_PATH} - {""}
    loaded = []
    for path in sorted(paths):
        try:
            vosk_engine.load_model(path)
            loaded.append(path)
        except Exception as exc:  # A broken model shows up in /readyz; serving goes on.
            logger.warning("Vosk model %s not loaded: %s", path, exc)
    return loaded


def clear() -> None:
    """Drop every idle decoder (tests; memory pressure)."""
    with _lock:
        _idle.clear()


def stats() -> dict:
    from audio_pipeline.stt import vosk_engine, whisper_engine
    from audio_pipeline.tts import espeak, piper_engine

    with _lock:
        idle = sum(len(decoders) for decoders in _idle.values())
        built, reused = _built, _reused
    return {
        "vosk_models": len(vosk_engine._models),
        "whisper_models": len(whisper_engine._models),
        "tts_workers": {
            pool.name: pool.stats() for pool in (piper_engine._pool, espeak._pool) if pool
        },
        "sphinx_decoders": {"built": built, "reused": reused, "idle": idle},
    }
