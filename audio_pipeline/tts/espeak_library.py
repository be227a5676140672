"""espeak-ng through its C library (libespeak-ng, Debian `libespeak-ng1`, installed with
`espeak-ng`), run inside the TTS worker processes (audio_pipeline/tts/worker_pool.py: some texts
crash it, issue 21), never in the server.

Starting the `espeak-ng` program costs ~11.5 ms of CPU before it says anything (loading itself and
its voice data); a sentence then takes ~2 ms more. Over 200 sessions that start-up was half of
the machine's CPU per turn (docs/operations.md). The library keeps its data loaded: ~3 ms of CPU
for a 3.4 s sentence, measured here.

The library keeps global state (the voice, the synthesis buffers) and is not thread-safe: one
worker process runs one synthesis at a time.

API used (espeak-ng's `speak_lib.h`): `espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, buflength ms, NULL,
espeakINITIALIZE_DONT_EXIT)` → sample rate (Hz); `espeak_SetSynthCallback`;
`espeak_SetVoiceByName`; `espeak_Synth(text, size, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, …)`.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from .base import TtsRequestError

AUDIO_OUTPUT_SYNCHRONOUS = 2
# One callback per 10 s of audio (the default, 60 ms, meant ~35 callbacks for a 2 s sentence).
BUFFER_MS = 10_000
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakLibrary:
    """One loaded libespeak-ng (a worker's `Synthesiser`). `synthesize(text, voice)` →
    [(PCM16 mono bytes, rate in Hz)]; raises `TtsRequestError` for an unknown voice or a failed
    synthesis; `load()` raises `OSError` when the library cannot be loaded."""

    def __init__(self, name: str = "espeak-ng") -> None:
        self.name = name  # Sent to a worker unloaded: `load` makes the rest there.
        self._lib: ctypes.CDLL | None = None
        self._rate = 0
        self._voice: str | None = None
        self._samples: list[bytes] = []
        self._callback = None
        self.callbacks = 0  # Blocks of samples handed over so far.

    def load(self) -> int:
        """Load and initialise the library (once). Returns its sample rate (Hz)."""
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
            self._callback = SYNTH_CALLBACK(self._collect)  # Kept: the library holds it.
            lib.espeak_SetSynthCallback(self._callback)
            self._lib, self._rate = lib, rate
            self.synthesize("Ready.", None)  # Loads the default voice's data now.
        return self._rate

    def _collect(self, wav, count: int, events) -> int:
        self.callbacks += 1
        if count > 0 and wav:
            self._samples.append(ctypes.string_at(wav, count * 2))
        return 0  # Go on.

    def synthesize(self, text: str, voice: str | None) -> list[tuple[bytes, int]]:
        rate = self.load()
        lib = self._lib
        voice = voice or "en"
        if voice != self._voice:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                self._voice = None
                raise TtsRequestError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice
        data = text.encode("utf-8") + b"\0"
        self._samples = []
        status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        pcm, self._samples = b"".join(self._samples), []
        if status != 0:
            raise TtsRequestError(f"espeak-ng could not synthesise the text (error {status})")
        return [(pcm, rate)]
