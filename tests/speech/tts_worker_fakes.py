"""A synthesiser for the worker pool's tests (imported by the worker processes too): its text
says what to do, so each way a native engine fails can be asked for."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from audio_pipeline.tts.base import TtsRequestError


class Scripted:
    """Text "hang" sleeps, "crash" aborts (as glibc does on a buffer overflow), "refuse" refuses,
    anything else comes back as two chunks: the text's bytes, then its pid (4 bytes)."""

    def __init__(self, *, load_error: str = "") -> None:
        self.load_error = load_error

    def load(self) -> None:
        if self.load_error:
            raise OSError(self.load_error)

    def synthesize(self, text: str, voice: str | None) -> Iterator[tuple[bytes, int]]:
        if text == "hang":
            time.sleep(600)
        if text == "crash":
            os.abort()
        if text == "refuse":
            raise TtsRequestError(f"no voice {voice!r}")
        yield text.encode(), 16000
        yield os.getpid().to_bytes(4, "little"), 16000
