"""espeak-ng inside the server process, through its C library (libespeak-ng, Debian
`libespeak-ng1`, installed with `espeak-ng`).

Starting the `espeak-ng` program costs ~11.5 ms of CPU before it says anything (loading itself and
its voice data); a sentence then takes ~2 ms more. Over 200 sessions that start-up was half of
the machine's CPU per turn (docs/operations.md). The library keeps its data loaded: ~3 ms of CPU
for a 3.4 s sentence, measured here, in one process.

The library keeps global state (the voice, the synthesis buffers) and is not thread-safe: every
call runs on one thread of its own, in turn. `ctypes` releases the GIL during the synthesis and
takes it back for each block of samples handed to the callback.

API used (espeak-ng's `speak_lib.h`): `espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, buflength ms, NULL,
espeakINITIALIZE_DONT_EXIT)` → sample rate (Hz); `espeak_SetSynthCallback`;
`espeak_SetVoiceByName`; `espeak_Synth(text, size, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, …)`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
from concurrent.futures import ThreadPoolExecutor

from .base import TtsError

AUDIO_OUTPUT_SYNCHRONOUS = 2
# One callback per 10 s of audio (the default, 60 ms, meant ~35 callbacks for a 2 s sentence,
# each taking the GIL back: under load the one synthesis thread queued on the GIL).
BUFFER_MS = 10_000
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakLibrary:
    """One loaded libespeak-ng. `await synthesize(text, voice)` → (PCM16 mono bytes, rate in Hz).
    Raises `TtsError` for an unknown voice or a failed synthesis; `load()` raises `OSError`
    when the library cannot be loaded."""

    def __init__(self, name: str = "espeak-ng") -> None:
        self.name = name
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="espeak-lib")
        self._lib: ctypes.CDLL | None = None
        self._rate = 0
        self._voice: str | None = None
        self._samples: list[bytes] = []
        self.callbacks = 0  # Blocks of samples handed over so far (each takes the GIL).
        self._callback = SYNTH_CALLBACK(self._collect)  # Kept: the library holds a pointer.
        self._load_lock = threading.Lock()

    def load(self) -> int:
        """Load and initialise the library (blocking; once). Returns its sample rate (Hz)."""
        with self._load_lock:
            if self._lib is None:
                path = ctypes.util.find_library(self.name) or self.name
                lib = ctypes.CDLL(path)
                lib.espeak_Initialize.argtypes = [
                    ctypes.c_int,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                ]
                lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
                lib.espeak_Synth.argtypes = [
                    ctypes.c_char_p,
                    ctypes.c_size_t,
                    ctypes.c_uint,
                    ctypes.c_int,
                    ctypes.c_uint,
                    ctypes.c_uint,
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                ]
                rate = lib.espeak_Initialize(
                    AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, None, INITIALIZE_DONT_EXIT
                )
                if rate <= 0:
                    raise OSError(f"espeak_Initialize failed ({rate})")
                lib.espeak_SetSynthCallback(self._callback)
                self._lib, self._rate = lib, rate
            return self._rate

    async def synthesize(self, text: str, voice: str) -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._synthesize, text, voice)

    def _collect(self, wav, count: int, events) -> int:
        self.callbacks += 1
        if count > 0 and wav:
            self._samples.append(ctypes.string_at(wav, count * 2))
        return 0  # Go on.

    def _synthesize(self, text: str, voice: str) -> tuple[bytes, int]:
        try:
            rate = self.load()
        except OSError as exc:
            raise TtsError(f"libespeak-ng could not be loaded: {exc}") from exc
        lib = self._lib
        if voice != self._voice:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                self._voice = None
                raise TtsError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice
        data = text.encode("utf-8") + b"\0"
        self._samples = []
        status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        pcm, self._samples = b"".join(self._samples), []
        if status != 0:
            raise TtsError(f"espeak-ng could not synthesise the text (error {status})")
        return pcm, rate


_library: EspeakLibrary | None = None
_library_lock = threading.Lock()


def espeak_library() -> EspeakLibrary:
    """The process's library (one: its state is global)."""
    global _library
    with _library_lock:
        if _library is None:
            _library = EspeakLibrary()
        return _library
