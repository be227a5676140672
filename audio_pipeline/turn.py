"""End of turn: after voice activity stops, decide whether the user has finished.

`EndOfTurn` (one per session) keeps the last 8 s of the user's 16 kHz audio. When the VAD
reports a stop, `verdict()` says how much silence after the speech ends the turn:

- with the Smart Turn v3 model (an audio classifier, ~10–100 ms on a CPU core): a turn it judges
  complete ends after `TURN_MIN_DELAY_MS` of silence, an unfinished one after `TURN_MAX_DELAY_MS`;
- without the model (not fetched, or `TURN_DETECTOR=silence`): after `TURN_SILENCE_MS`.

Speech that resumes before then continues the same turn. Blocking: call `verdict()` in a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from .models_packaged import smart_turn_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 8  # Smart Turn looks at the last 8 s
WINDOW_BYTES = SAMPLE_RATE * WINDOW_SECONDS * 2


@dataclass(frozen=True)
class TurnVerdict:
    end_after_ms: float  # silence after the end of speech that ends the turn
    complete: bool | None  # the model's call; None without a model
    probability: float | None  # the model's probability that the turn is complete
    engine: str  # "smart_turn" | "silence"
    elapsed_ms: float = 0.0  # time the model took


@dataclass(frozen=True)
class TurnConfig:
    min_delay_ms: float = 200.0
    max_delay_ms: float = 1500.0
    silence_ms: float = 700.0
    threshold: float = 0.5

    @classmethod
    def from_settings(cls) -> TurnConfig:
        return cls(
            min_delay_ms=settings.TURN_MIN_DELAY_MS,
            max_delay_ms=max(settings.TURN_MAX_DELAY_MS, settings.TURN_MIN_DELAY_MS),
            silence_ms=settings.TURN_SILENCE_MS,
            threshold=settings.TURN_THRESHOLD,
        )


class SmartTurnModel:
    """Smart Turn v3 ONNX: 8 s of 16 kHz audio → probability that the turn is complete."""

    engine = "smart_turn"

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), sess_options=options)
        # Whisper's 80-bin log-mel over 8 s (80 x 800), the model's input; the same numbers as
        # transformers' WhisperFeatureExtractor(chunk_length=8), which the model was trained on.
        self._features = FeatureExtractor(chunk_length=WINDOW_SECONDS)
        self._lock = threading.Lock()  # one inference at a time per process (CPU-bound)

    def predict(self, pcm16: bytes) -> float:
        """Probability (0..1) that the speech ending `pcm16` (16 kHz mono) is a complete turn."""
        audio = np.frombuffer(pcm16[-WINDOW_BYTES:], dtype="<i2").astype(np.float32) / 32768
        audio = np.pad(audio, (SAMPLE_RATE * WINDOW_SECONDS - len(audio), 0))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        features = self._features(audio, padding=0).astype(np.float32)[None]
        with self._lock:
            outputs = self._session.run(None, {"input_features": features})
        return float(np.asarray(outputs[0]).reshape(-1)[0])


_models: dict[str, SmartTurnModel] = {}
_models_lock = threading.Lock()


def load_smart_turn(path: str | Path | None = None) -> SmartTurnModel | None:
    """The process's Smart Turn model (loaded once), or None when the file is absent."""
    path = Path(path or smart_turn_path())
    key = str(path.resolve())
    with _models_lock:
        if key not in _models:
            if not path.is_file():
                return None
            _models[key] = SmartTurnModel(path)
        return _models[key]


def detector_name() -> str:
    """Which end-of-turn detector sessions get: "smart_turn" or "silence" (for /readyz)."""
    if settings.TURN_DETECTOR == "smart_turn" and smart_turn_path().is_file():
        return "smart_turn"
    return "silence"


def readiness() -> dict:
    detector = detector_name()
    details: dict[str, object] = {"detector": detector}
    if settings.TURN_DETECTOR == "smart_turn" and detector == "silence":
        details["reason"] = (
            f"no Smart Turn model at {smart_turn_path()} (run manage.py download_models smart-turn)"
        )
    return details


class EndOfTurn:
    """One per session: the recent audio of the user's turn and the end-of-turn verdict."""

    def __init__(
        self, config: TurnConfig | None = None, model: SmartTurnModel | bool | None = True
    ) -> None:
        self.config = config or TurnConfig.from_settings()
        if model is True:
            model = load_smart_turn() if settings.TURN_DETECTOR == "smart_turn" else None
        self.model: SmartTurnModel | None = model or None
        self._audio: deque[bytes] = deque()
        self._bytes = 0

    @property
    def engine(self) -> str:
        return self.model.engine if self.model else "silence"

    def add_audio(self, pcm16: bytes) -> None:
        """16 kHz PCM16 mono of the current turn (only the last 8 s are kept)."""
        self._audio.append(pcm16)
        self._bytes += len(pcm16)
        while self._audio and self._bytes - len(self._audio[0]) >= WINDOW_BYTES:
            self._bytes -= len(self._audio.popleft())

    def reset(self) -> None:
        """A new turn starts: forget the audio."""
        self._audio.clear()
        self._bytes = 0

    def verdict(self) -> TurnVerdict:
        """How much silence after the speech ends this turn (blocking with a model)."""
        if self.model is None:
            return TurnVerdict(self.config.silence_ms, None, None, "silence")
        started = time.perf_counter()
        try:
            probability = self.model.predict(b"".join(self._audio))
        except Exception as exc:  # A broken model must not stop the conversation.
            log.warning("Smart Turn failed (%s); falling back to the silence timeout.", exc)
            return TurnVerdict(self.config.silence_ms, None, None, "silence")
        elapsed = (time.perf_counter() - started) * 1000
        complete = probability >= self.config.threshold
        wait = self.config.min_delay_ms if complete else self.config.max_delay_ms
        return TurnVerdict(wait, complete, round(probability, 4), "smart_turn", round(elapsed, 1))
