"""espeak-ng: offline, robotic, every language; the last resort (and Spanish offline).

Sentences are synthesised through libespeak-ng kept loaded in supervised worker processes
(`TTS_ESPEAK_IN_PROCESS`, the default: ~3 ms of CPU a sentence instead of ~13 ms for starting
the program each time; audio_pipeline/tts/espeak_library.py, worker_pool.py); with the setting
off, or when no worker can load the library, each sentence runs the `espeak-ng` program. Either
way a crash in espeak-ng costs one sentence, never the server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from django.conf import settings

from .base import AudioChunk, TtsError, TtsRequestError, Voice, base_language
from .espeak_library import EspeakLibrary
from .worker_pool import WorkerPool, WorkersDown

logger = logging.getLogger(__name__)

DEFAULT_VOICES = {"en": "en-us", "es": "es"}


BINARY_RECHECK_S = 30.0
_binary: tuple[str, float, str | None] | None = None  # (setting, looked up at, path)


def espeak_binary() -> str | None:
    """`shutil.which(TTS_ESPEAK_BINARY)`, looked up again at most every 30 s: it walks PATH with
    a stat per directory, and ran on the event loop twice for every sentence spoken."""
    global _binary
    name, now = settings.TTS_ESPEAK_BINARY, time.monotonic()
    if _binary is None or _binary[0] != name or now - _binary[1] >= BINARY_RECHECK_S:
        _binary = (name, now, shutil.which(name))
    return _binary[2]


@lru_cache(maxsize=1)
def _installed_voices() -> tuple[Voice, ...]:
    binary = espeak_binary()
    if not binary:
        return ()
    listing = subprocess.run(
        [binary, "--voices"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    voices = []
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            voices.append(Voice(parts[1], "espeak", parts[1], parts[3]))
    return tuple(voices)


def parse_wav_pcm16(data: bytes) -> tuple[bytes, int]:
    """PCM16 and rate from a WAV whose sizes may be unset (espeak-ng --stdout streams it)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("espeak-ng did not write a WAV file")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk_id == b"fmt ":
            rate = struct.unpack("<I", data[pos + 12 : pos + 16])[0]
        elif chunk_id == b"data":
            pcm = data[pos + 8 :]
            return pcm[: len(pcm) // 2 * 2], rate
        pos += 8 + size + (size & 1)
    raise TtsError("espeak-ng's WAV has no data chunk")


SPAWN_THREADS = 4
TIMEOUT_S = 30
_spawn_pool: ThreadPoolExecutor | None = None


def _spawner() -> ThreadPoolExecutor:
    """Threads that start espeak-ng and wait for it. Spawning from the event loop (asyncio's
    subprocess transports) cost 16 % of the loop at 200 sessions (docs/operations.md); here the
    fork (vfork, without the GIL) and the pipes cost the loop nothing."""
    global _spawn_pool
    if _spawn_pool is None:
        _spawn_pool = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="espeak")
    return _spawn_pool


def _run(command: list[str], text: bytes) -> tuple[int, bytes, bytes]:
    """Run espeak-ng on `text` (blocking; killed after 30 s): (exit code, WAV bytes, stderr)."""
    try:
        done = subprocess.run(command, input=text, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise TtsRequestError("espeak-ng timed out on this text") from exc
    except OSError as exc:
        raise TtsError(f"espeak-ng could not start: {exc}") from exc
    return done.returncode, done.stdout, done.stderr


_library_failed: str | None = None
_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def espeak_pool() -> WorkerPool:
    """The process's libespeak-ng workers (created here, started by `library_usable`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(
                "espeak",
                EspeakLibrary(),
                size=settings.TTS_WORKERS,
                timeout=settings.TTS_WORKER_TIMEOUT,
                max_waiting=settings.TTS_WORKER_QUEUE,
            )
        _pool.timeout = settings.TTS_WORKER_TIMEOUT  # Read again: it may change at run time.
        return _pool


def library_usable() -> bool:
    """Can workers load libespeak-ng? Asked once (blocking: starts the workers); a failure is
    logged and the program used."""
    global _library_failed
    if _library_failed is None:
        try:
            espeak_pool().start()
            _library_failed = ""
        except WorkersDown as exc:
            _library_failed = str(exc)
            logger.warning("libespeak-ng not loaded (%s): running espeak-ng per sentence.", exc)
    return not _library_failed


async def _library_ready() -> bool:
    if _library_failed is None:  # Not asked yet: starting the workers blocks.
        return await asyncio.to_thread(library_usable)
    return not _library_failed


class EspeakTts:
    name = "espeak"

    def available(self) -> tuple[bool, str]:
        if not espeak_binary():
            return False, f"{settings.TTS_ESPEAK_BINARY} not found (apt-get install espeak-ng)"
        return True, ""

    def supports(self, language: str) -> bool:
        names = {v.name.lower() for v in _installed_voices()}
        base = base_language(language)
        return any(n in (language.lower(), base) or n.startswith(base + "-") for n in names)

    def default_voice(self, language: str) -> str | None:
        names = {v.name.lower() for v in _installed_voices()}
        tag = language.lower()
        if tag in names:
            return tag
        return DEFAULT_VOICES.get(base_language(language), base_language(language))

    def knows_voice(self, voice: str) -> bool:
        return voice.lower() in {v.name.lower() for v in _installed_voices()}

    def voices(self) -> list[Voice]:
        return list(_installed_voices())

    async def synthesize(
        self, text: str, *, language: str, voice: str | None
    ) -> AsyncIterator[AudioChunk]:
        name = voice or self.default_voice(language) or "en"
        if voice and not self.knows_voice(voice):
            raise TtsRequestError(f"espeak-ng has no voice {voice!r}; see GET /api/voices.")
        if settings.TTS_ESPEAK_IN_PROCESS and await _library_ready():
            async for pcm, rate in espeak_pool().synthesize(text, name):
                yield AudioChunk(pcm, "pcm16", rate)
            return
        binary = espeak_binary()
        if not binary:
            raise TtsError("espeak-ng is not installed")
        command = [binary, "-v", name, "--stdout"]
        loop = asyncio.get_running_loop()
        returncode, out, err = await loop.run_in_executor(_spawner(), _run, command, text.encode())
        if returncode < 0:  # Killed by a signal: this text crashed it.
            raise TtsRequestError(f"espeak-ng crashed on this text (signal {-returncode})")
        if returncode != 0:
            raise TtsError(f"espeak-ng failed: {err.decode(errors='replace')[:200]}")
        pcm, rate = parse_wav_pcm16(out)
        yield AudioChunk(pcm, "pcm16", rate)
