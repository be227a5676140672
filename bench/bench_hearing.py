"""Spoken turns through the live loop (real daphne, /ws/voice/): word error and first audio.

    .venv/bin/python bench/bench_hearing.py [--language en|es|both] [--stt whisper,pocketsphinx]

Synthesised speech (Piper for English, espeak-ng for Spanish) is streamed in 40 ms PCM16 frames
at real-time pace, with silence between turns, to the seeded `nova` (English) and `rosa`
(Spanish) instances. The model is the fake OpenAI-compatible server: 300 ms to the first token,
then 50 tokens/s. Per turn it records the final transcript (word error against the script) and,
measured on the client, the first reply audio after the end of speech (the moment the last
frame holding speech was sent), with the server's `metrics` breakdown. Prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import websockets

from bench.procs import API_KEY, FakeModel, prepare_database, server_env, start_daphne

RATE = 16000
FRAME = int(RATE * 0.04) * 2  # 40 ms
REPLY = "Of course, I can help with that. Tell me a little more and we will sort it out."

ENGLISH = [
    "Hello, how are you today?",
    "What is the weather like this weekend?",
    "Can you recommend a good book to read?",
    "I would like a cup of coffee with milk.",
    "Tell me a story about a brave little ship.",
    "How far away is the moon from the earth?",
    "My favourite colour is green.",
    "Please remind me to call my sister tomorrow.",
]
SPANISH = [
    "Hola, ¿cómo estás hoy?",
    "¿Qué vamos a cocinar esta noche?",
    "Me gustaría un café con leche.",
    "Cuéntame una historia de tu pueblo.",
    "Mañana voy a visitar a mi hermana.",
    "¿Cuántos años tienes, abuela?",
]


def piper_16k(text: str) -> bytes:
    from audio_pipeline.formats import decode_audio, encode
    from audio_pipeline.tts.piper_engine import load_voice

    chunks = list(load_voice().synthesize(text))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    return decode_audio(encode(pcm, chunks[0].sample_rate, "wav"), target_rate=RATE).pcm


def espeak_16k(text: str) -> bytes:
    from audio_pipeline.formats import decode_audio

    wav = subprocess.run(
        ["espeak-ng", "-v", "es", "-s", "140", "--stdout", text], capture_output=True, check=True
    ).stdout
    return decode_audio(wav, target_rate=RATE).pcm


def speech_end_bytes(pcm: bytes, level: int = 500) -> int:
    loud = np.nonzero(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > level)[0]
    return int(loud[-1] + 1) * 2


def word_error(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words), case and punctuation aside."""
    ref = re.findall(r"[\w']+", reference.lower())
    hyp = re.findall(r"[\w']+", hypothesis.lower())
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


class Speaker:
    """Streams audio at real-time pace, silence when there is nothing to say."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pending = bytearray()
        self.speech_end_at: float | None = None
        self._end_offset: int | None = None
        self._sent = 0

    def say(self, pcm: bytes) -> None:
        self._end_offset = self._sent + len(self.pending) + speech_end_bytes(pcm)
        self.speech_end_at = None
        self.pending += pcm

    async def run(self) -> None:
        start = time.perf_counter()
        frames = 0
        while True:
            chunk = bytes(self.pending[:FRAME]).ljust(FRAME, b"\0")
            del self.pending[:FRAME]
            await self.ws.send(chunk)
            self._sent += FRAME
            if self._end_offset is not None and self._sent >= self._end_offset:
                self.speech_end_at = time.perf_counter()
                self._end_offset = None
            frames += 1
            await asyncio.sleep(max(0.0, start + frames * 0.04 - time.perf_counter()))


async def spoken_turns(url: str, token: str, instance: str, script: list[str], speak) -> list:
    ws = await websockets.connect(f"{url}/ws/voice/?token={token}", max_size=2**24)
    await ws.send(json.dumps({"type": "session.start", "instance": instance}))
    started = json.loads(await ws.recv())
    print(f"  {instance}: stt_engine={started.get('stt_engine')}")
    speaker = Speaker(ws)
    sender = asyncio.create_task(speaker.run())
    results = []
    try:
        for text in script:
            speaker.say(speak(text) + b"\0" * RATE)
            heard, first_audio, metrics = "", None, {}
            while True:
                frame = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(frame, bytes):
                    if first_audio is None and speaker.speech_end_at is not None:
                        first_audio = (time.perf_counter() - speaker.speech_end_at) * 1000
                    continue
                event = json.loads(frame)
                if event["type"] == "transcript.final":
                    heard = f"{heard} {event['text']}".strip()
                elif event["type"] == "metrics":
                    metrics = event
                    break
            edits, words = word_error(text, heard)
            results.append((text, heard, edits, words, first_audio, metrics))
            print(f"    {edits}/{words}  {first_audio or 0:6.0f} ms  {text!r} → {heard!r}")
            await asyncio.sleep(1.0)
    finally:
        sender.cancel()
        await ws.close()
    return results


def report(name: str, results: list) -> None:
    edits = sum(r[2] for r in results)
    words = sum(r[3] for r in results)
    print(f"{name}: word error {edits}/{words} = {edits / max(1, words):.3f}")
    firsts = [r[4] for r in results if r[4] is not None]
    if firsts:
        print(
            f"  first audio after end of speech (client): median {statistics.median(firsts):.0f} ms"
        )
    keys = ("turn_end_ms", "stt_final_ms", "llm_first_token_ms", "first_sentence_ms")
    for key in (*keys, "tts_first_audio_ms", "first_audio_ms"):
        values = [r[5].get(key) for r in results if r[5].get(key) is not None]
        if values:
            print(f"  {key:>20}: median {statistics.median(values):7.1f} ms (n={len(values)})")


def main() -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--language", default="both", choices=["en", "es", "both"])
    parser.add_argument("--stt", default="", help="STT_ENGINES for the server (default: its own)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="voz-bench-hearing-"))
    fake = FakeModel(data, ttft=0.3, tps=50)
    fake.control(text=REPLY)
    extra = dict(item.split("=", 1) for item in args.env)
    if args.stt:
        extra["STT_ENGINES"] = args.stt
    env = server_env(
        data,
        LLM_ENGINE="openai",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=API_KEY,
        TTS_ENGINES="piper,espeak",
        MEMORY_CONSOLIDATION="false",
        WS_TURNS_PER_MINUTE="0",  # One user, many sessions: no per-user limits.
        WS_MAX_SESSIONS_PER_USER="0",
        **extra,
    )
    token = prepare_database(env)["token"]
    server = start_daphne(env)
    url = f"ws://127.0.0.1:{server.port}"
    try:
        if args.language in ("en", "both"):
            report(
                "English (Piper)",
                asyncio.run(spoken_turns(url, token, "nova", ENGLISH, piper_16k)),
            )
        if args.language in ("es", "both"):
            report(
                "Spanish (espeak-ng)",
                asyncio.run(spoken_turns(url, token, "rosa", SPANISH, espeak_16k)),
            )
    finally:
        server.stop()
        fake.stop()


if __name__ == "__main__":
    main()
