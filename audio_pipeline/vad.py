"""Voice activity detection with Silero VAD (v5 ONNX on onnxruntime, audio_pipeline/silero_onnx.py).

`VoiceActivityDetector.feed(pcm16)` takes 16 kHz mono PCM16 in chunks of any size and returns
events with stream times in milliseconds (from the first sample fed):

- `start`: speech began (`at_ms` = the first speech window); reported once speech has lasted
  `min_speech_ms`, so clicks and short bursts are ignored.
- `pause`: speech probability fell below the release threshold (`at_ms` = where speech ended);
  the stop is not confirmed yet. Consumers may start work early (decode, ask the turn model).
- `resume`: speech came back before the pause was confirmed (`at_ms` = where it came back).
- `stop`: the pause lasted `min_silence_ms` (`at_ms` = where speech ended, as in its `pause`;
  `duration_ms` = how long the speech lasted).

Blocking (each 32 ms window costs ~0.5 ms of CPU): call it off the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from .models_packaged import silero_vad_path
from .silero_onnx import SileroOnnx

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512  # Silero's fixed window at 16 kHz
WINDOW_BYTES = WINDOW_SAMPLES * 2
WINDOW_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE  # 32 ms

EventKind = Literal["start", "pause", "resume", "stop"]


@dataclass(frozen=True)
class VadEvent:
    kind: EventKind
    at_ms: float  # stream time of the change, ms from the first sample fed
    duration_ms: float = 0.0  # `stop` only: how long the speech lasted


@dataclass(frozen=True)
class VadConfig:
    """Thresholds are speech probabilities (0..1); durations in ms."""

    threshold: float = 0.5  # a window at or above this is speech
    min_speech_ms: float = 96.0  # speech must last this long before `start`
    min_silence_ms: float = 200.0  # silence that confirms `stop`

    @property
    def release(self) -> float:
        """Below this a window is silence (hysteresis, as Silero's own iterator does)."""
        return max(0.01, self.threshold - 0.15)

    @classmethod
    def from_settings(cls) -> VadConfig:
        return cls(
            threshold=settings.VAD_THRESHOLD,
            min_speech_ms=settings.VAD_MIN_SPEECH_MS,
            min_silence_ms=settings.VAD_MIN_SILENCE_MS,
        )


_load_lock = threading.Lock()


class VadUnavailable(RuntimeError):
    """The Silero model file is missing (run `manage.py download_models vad`)."""


def _new_model() -> SileroOnnx:
    path = silero_vad_path()
    if not path.is_file():
        raise VadUnavailable(f"No Silero VAD model at {path}: run manage.py download_models vad.")
    with _load_lock:  # The session loads once per process; a stream's state is its own.
        return SileroOnnx(path)


class VoiceActivityDetector:
    """One per audio stream (Silero keeps a recurrent state between windows)."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig.from_settings()
        self._model = _new_model()
        self.reset()

    def reset(self) -> None:
        """Forget the stream: times start again at 0."""
        self._model.reset()
        self._pending = b""
        self._windows = 0
        self.probability = 0.0
        self.in_speech = False  # between `start` and `stop`
        self._paused_at: float | None = None  # speech end while a pause is unconfirmed
        self._run_start: float | None = None  # candidate speech run before `start`
        self._speech_start = 0.0

    @property
    def position_ms(self) -> float:
        """Stream time of the audio analysed so far."""
        return self._windows * WINDOW_MS

    def feed(self, pcm16: bytes) -> list[VadEvent]:
        """Analyse more 16 kHz PCM16 mono; returns the events it completes, in order."""
        self._pending += pcm16
        events: list[VadEvent] = []
        usable = len(self._pending) - len(self._pending) % WINDOW_BYTES
        for offset in range(0, usable, WINDOW_BYTES):
            self._window(self._pending[offset : offset + WINDOW_BYTES], events)
        self._pending = self._pending[usable:]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: a speech still open stops where the audio ends."""
        self._pending = b""
        if not self.in_speech:
            self._run_start = None
            return []
        end = self._paused_at if self._paused_at is not None else self.position_ms
        events = [] if self._paused_at is not None else [VadEvent("pause", end)]
        events.append(VadEvent("stop", end, end - self._speech_start))
        self.in_speech = False
        self._paused_at = None
        return events

    def _window(self, window: bytes, events: list[VadEvent]) -> None:
        start = self.position_ms
        self.probability = self._model.process_chunk(window)
        self._windows += 1
        speech = self.probability >= self.config.threshold
        silence = self.probability < self.config.release
        if not self.in_speech:
            if speech:
                self._run_start = start if self._run_start is None else self._run_start
                if self.position_ms - self._run_start >= self.config.min_speech_ms:
                    self.in_speech = True
                    self._speech_start = self._run_start
                    self._run_start = None
                    events.append(VadEvent("start", self._speech_start))
            elif silence:
                self._run_start = None
            return
        if self._paused_at is None:
            if silence:
                self._paused_at = start
                events.append(VadEvent("pause", start))
            return
        if speech:
            self._paused_at = None
            events.append(VadEvent("resume", start))
        elif self.position_ms - self._paused_at >= self.config.min_silence_ms:
            end = self._paused_at
            self.in_speech = False
            self._paused_at = None
            events.append(VadEvent("stop", end, end - self._speech_start))
