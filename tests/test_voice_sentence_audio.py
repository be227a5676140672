"""Joining a TTS engine's chunks into one playable sentence (voice.engines._complete_audio)."""

from __future__ import annotations

import io
import math
import struct
import wave

from audio_pipeline import formats
from audio_pipeline.tts import AudioChunk
from voice.engines import _complete_audio


def tone(seconds: float, rate: int) -> bytes:
    count = int(seconds * rate)
    return struct.pack(
        f"<{count}h", *(int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(count))
    )


def wav_frames(data: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(data)) as handle:
        return handle.getframerate(), handle.getnframes()


def test_pcm_chunks_become_one_wav():
    chunks = [
        AudioChunk(tone(0.5, 22050), "pcm16", 22050),
        AudioChunk(tone(0.25, 22050), "pcm16", 22050),
    ]
    data, rate = _complete_audio(chunks, "wav")
    assert rate == 22050
    assert wav_frames(data) == (22050, int(0.5 * 22050) + int(0.25 * 22050))


def test_pieces_of_one_mp3_stream_decode_as_a_whole():
    mp3 = formats.encode(tone(1.0, 24000), 24000, "mp3")
    third = len(mp3) // 3
    chunks = [AudioChunk(mp3[i : i + third], "mp3", 24000) for i in range(0, len(mp3), third)]
    data, rate = _complete_audio(chunks, "wav")
    framerate, frames = wav_frames(data)
    assert (rate, framerate) == (24000, 24000)
    assert abs(frames - 24000) < 24000 * 0.1  # about one second, not one third of it
