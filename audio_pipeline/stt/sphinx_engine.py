"""PocketSphinx: the offline English fallback, with its bundled en-us model.

A voice-activity endpointer cuts utterances; each one is decoded incrementally (partials as the
hypothesis changes) and closed with a final at the endpoint.
"""

from __future__ import annotations

import math
import re
import weakref

from pocketsphinx import Decoder, Endpointer

from . import cache
from .base import Transcript, Word

FRAMES_PER_SECOND = 100  # PocketSphinx's default feature frame rate.
_FILLER = re.compile(r"^(<.*>|\[.*\])$")


class _Lease:
    """A pooled decoder held by one recogniser, given back when the recogniser is collected."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.decoder: Decoder | None = cache.sphinx_decoder(sample_rate)
        self.in_utt = False

    def release(self) -> None:
        if self.decoder is not None:
            cache.sphinx_release(self.decoder, self.sample_rate, self.in_utt)
            self.decoder = None


class SphinxRecognizer:
    engine = "pocketsphinx"

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._lease = _Lease(sample_rate)
        self._decoder = self._lease.decoder
        weakref.finalize(self, self._lease.release)
        self.reset()

    @property
    def _in_utt(self) -> bool:
        return self._lease.in_utt

    @_in_utt.setter
    def _in_utt(self, value: bool) -> None:
        self._lease.in_utt = value

    def _new_endpointer(self) -> None:
        self._endpointer = Endpointer(sample_rate=self.sample_rate)
        self._frame_bytes = self._endpointer.frame_bytes

    def reset(self) -> None:
        if self._in_utt:
            self._decoder.end_utt()
        self._new_endpointer()
        self._pending = b""
        self._in_utt = False
        self._utt_offset = 0.0
        self._last_partial = ""
        self._stream_start = 0.0  # Session time at which the current endpointer started.
        self._fed_bytes = 0

    def accept(self, pcm16: bytes) -> list[Transcript]:
        self._pending += pcm16
        out: list[Transcript] = []
        while len(self._pending) >= self._frame_bytes:
            frame = self._pending[: self._frame_bytes]
            self._pending = self._pending[self._frame_bytes :]
            self._fed_bytes += len(frame)
            self._feed(self._endpointer.process(frame), out)
        return out

    def finish(self) -> Transcript:
        out: list[Transcript] = []
        tail = self._pending + b"\0" * (-len(self._pending) % 2)
        self._pending = b""
        self._fed_bytes += len(tail)
        # end_stream needs at least one sample (an empty buffer raises IndexError in
        # pocketsphinx 5): when the audio ended on a frame boundary mid-speech, one silent one.
        speech = self._endpointer.end_stream(tail or b"\0\0") if tail or self._in_utt else None
        if speech is not None:
            self._feed(speech, out, force_end=True)
        elif self._in_utt:
            out.append(self._end_utt())
        finals = [t for t in out if t.final]
        self._stream_start += self._fed_bytes / 2 / self.sample_rate
        self._fed_bytes = 0
        self._new_endpointer()
        text = " ".join(t.text for t in finals if t.text)
        return Transcript(text, True, tuple(w for t in finals for w in t.words))

    def _feed(self, speech: bytes | None, out: list[Transcript], force_end: bool = False) -> None:
        if not speech:
            # None, or b"" from end_stream when the endpointer holds no speech: process_raw
            # of an empty buffer raises IndexError in pocketsphinx 5.
            if force_end and self._in_utt:
                final = self._end_utt()
                if final.text:
                    out.append(final)
            return
        if not self._in_utt:
            self._decoder.start_utt()
            self._in_utt = True
            self._utt_offset = self._stream_start + self._endpointer.speech_start
        self._decoder.process_raw(speech, False, False)
        if force_end or not self._endpointer.in_speech:
            final = self._end_utt()
            if final.text:
                out.append(final)
            return
        hyp = self._decoder.hyp()
        partial = hyp.hypstr.strip() if hyp else ""
        if partial and partial != self._last_partial:
            self._last_partial = partial
            out.append(Transcript(partial, final=False))

    def _end_utt(self) -> Transcript:
        self._decoder.end_utt()
        self._in_utt = False
        self._last_partial = ""
        hyp = self._decoder.hyp()
        words = []
        for seg in self._decoder.seg():
            if _FILLER.match(seg.word):
                continue
            words.append(
                Word(
                    re.sub(r"\(\d+\)$", "", seg.word),
                    round(self._utt_offset + seg.start_frame / FRAMES_PER_SECOND, 3),
                    round(self._utt_offset + (seg.end_frame + 1) / FRAMES_PER_SECOND, 3),
                    _confidence(self._decoder, seg.prob),
                )
            )
        text = hyp.hypstr.strip() if hyp else " ".join(w.word for w in words)
        return Transcript(text, True, tuple(words))


def _confidence(decoder: Decoder, log_prob: int) -> float:
    try:
        return round(min(1.0, max(0.0, math.exp(decoder.logmath.log_to_ln(log_prob)))), 3)
    except (AttributeError, OverflowError, ValueError):
        return 1.0
