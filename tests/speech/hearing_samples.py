"""Speech for the hearing tests: Piper English and espeak-ng (any language) at 16 kHz, cached."""

from __future__ import annotations

import functools
import subprocess

import numpy as np

from audio_pipeline.formats import decode_audio, encode

RATE = 16000


def silence(seconds: float) -> bytes:
    return b"\0" * (int(RATE * seconds) * 2)


def noise(seconds: float, level: float = 4000, seed: int = 1) -> bytes:
    samples = np.random.default_rng(seed).normal(0, level, int(RATE * seconds))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


@functools.cache
def piper(text: str) -> bytes:
    """English speech from Piper (en_US-joe-medium), PCM16 mono at 16 kHz."""
    from audio_pipeline.tts.piper_engine import load_voice

    chunks = list(load_voice().synthesize(text))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    return decode_audio(encode(pcm, chunks[0].sample_rate, "wav"), target_rate=RATE).pcm


@functools.cache
def espeak(text: str, voice: str = "es", speed: int = 140) -> bytes:
    """espeak-ng speech (robotic), PCM16 mono at 16 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    return decode_audio(wav, target_rate=RATE).pcm


def energy_span_ms(pcm: bytes, level: int = 500) -> tuple[float, float]:
    """First and last sample louder than `level`, in ms: where the speech really is."""
    loud = np.nonzero(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > level)[0]
    return loud[0] * 1000 / RATE, loud[-1] * 1000 / RATE


def word_error(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference words (case and punctuation aside)."""
    import re

    def words(text: str) -> list[str]:
        return re.findall(r"[\w']+", text.lower())

    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))
