"""Vosk streaming recognition: one shared model per path, one KaldiRecognizer per session.

Vosk 0.3.45's Python API has no `SetEndpointerDelays`; endpoints follow the Kaldi rules in the
model's `conf/model.conf` (`--endpoint.rule*`), see docs/speech.md.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import vosk

from .base import Transcript, Word

FRAME_SECONDS = 0.1  # Audio is fed in fixed frames, so results never depend on chunk sizes.

_models: dict[str, vosk.Model] = {}
_models_lock = threading.Lock()
vosk.SetLogLevel(-1)


def load_model(path: str | Path) -> vosk.Model:
    """Load (once per process) the Vosk model at `path`; thread-safe."""
    key = str(Path(path).resolve())
    with _models_lock:
        if key not in _models:
            if not (Path(key) / "am").is_dir() and not (Path(key) / "conf").is_dir():
                raise FileNotFoundError(f"No Vosk model at {key}")
            _models[key] = vosk.Model(model_path=key)
        return _models[key]


class VoskRecognizer:
    engine = "vosk"

    def __init__(self, model_path: str | Path, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._model = load_model(model_path)
        self._frame_bytes = int(sample_rate * FRAME_SECONDS) * 2
        self._pending = b""
        self._new_recognizer()

    def _new_recognizer(self) -> None:
        self._rec = vosk.KaldiRecognizer(self._model, self.sample_rate)
        self._rec.SetWords(True)
        self._last_partial = ""

    def accept(self, pcm16: bytes) -> list[Transcript]:
        self._pending += pcm16
        out: list[Transcript] = []
        while len(self._pending) >= self._frame_bytes:
            frame = self._pending[: self._frame_bytes]
            self._pending = self._pending[self._frame_bytes :]
            if self._rec.AcceptWaveform(frame):
                final = self._parse_final(self._rec.Result())
                self._last_partial = ""
                if final.text:
                    out.append(final)
            else:
                partial = json.loads(self._rec.PartialResult()).get("partial", "")
                if partial and partial != self._last_partial:
                    self._last_partial = partial
                    out.append(Transcript(partial, final=False))
        return out

    def finish(self) -> Transcript:
        if self._pending:
            self._rec.AcceptWaveform(self._pending[: len(self._pending) // 2 * 2])
            self._pending = b""
        self._last_partial = ""
        return self._parse_final(self._rec.FinalResult())

    def reset(self) -> None:
        self._pending = b""
        self._new_recognizer()

    @staticmethod
    def _parse_final(raw: str) -> Transcript:
        result = json.loads(raw)
        words = tuple(
            Word(w["word"], float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
            for w in result.get("result", [])
        )
        return Transcript(result.get("text", "").strip(), final=True, words=words)
