"""Audio formats: decode what clients send into mono PCM16, encode what engines make for clients.

Decoding sniffs the container (WAV, FLAC, WebM/Opus, OGG/Opus or Vorbis, MP3) or takes raw
PCM16LE at a stated rate, downmixes to mono and resamples with soxr (a real band-limited
resampler; samples are never dropped) block by block, so a duration limit is enforced from the
header and while decoding, never after decoding a whole file (docs/reliability.md). Encoding writes WAV, raw PCM16, MP3 and OGG/Opus.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soundfile
import soxr

OUTPUT_FORMATS = ("wav", "pcm16", "mp3", "ogg")
INPUT_FORMATS_HELP = (
    "WAV, FLAC, WebM/Opus, OGG/Opus, MP3, or raw PCM16LE mono "
    "(Content-Type 'audio/L16;rate=16000' or 'audio/pcm;rate=N', 8000-48000 Hz)"
)
RAW_TYPES = {"audio/l16", "audio/pcm", "audio/x-raw", "audio/raw", "audio/x-pcm"}
MIN_RATE, MAX_RATE = 8000, 48000
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# Containers may carry any rate; outside these it is corrupt or meant to cost us.
MIN_DECODED_RATE, MAX_DECODED_RATE = 1000, 384000
MAX_BLOCK_BYTES = 1 << 20  # float32 samples (all channels) read from libsndfile at a time
UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count when the header does not say


class AudioFormatError(ValueError):
    """The audio is not in a supported format, or is corrupt."""


class AudioTooLong(ValueError):
    """The audio lasts longer than the caller's limit: its header says so, or decoding reached it."""


@dataclass(frozen=True)
class DecodedAudio:
    pcm: bytes  # mono PCM16LE
    sample_rate: int
    source_format: str

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    sample_rate: int
    content_type: str
    duration_s: float | None = None  # how long it plays


def content_type_for(fmt: str, sample_rate: int) -> str:
    """The HTTP Content-Type of an output format."""
    types = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
    if fmt == "pcm16":
        return f"audio/L16;rate={sample_rate};channels=1"
    if fmt not in types:
        raise AudioFormatError(f"Unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}.")
    return types[fmt]


def sniff(data: bytes) -> str | None:
    """Name the container from its magic bytes, or None."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def raw_rate_from_content_type(content_type: str) -> int | None:
    """`audio/L16;rate=22050` → 22050; None when it is not a raw PCM type.

    Raises AudioFormatError for a rate that is no number of a few digits (a 5,000-digit one
    would pass Python's int() digit limit and raise ValueError).
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in RAW_TYPES:
        return None
    match = re.search(r"rate=(\d*)", content_type, re.IGNORECASE)
    if match is None:
        return 16000
    if not 0 < len(match.group(1)) <= len(str(MAX_RATE)):
        raise AudioFormatError(
            f"Raw PCM16 rate {match.group(1)[:10] or '(none)'}"
            f"{'…' if len(match.group(1)) > 10 else ''} is outside {MIN_RATE}-{MAX_RATE} Hz."
        )
    return int(match.group(1))


def decode_audio(
    data: bytes,
    *,
    content_type: str = "",
    sample_rate: int | None = None,
    target_rate: int,
    max_seconds: float | None = None,
) -> DecodedAudio:
    """Decode any supported input into mono PCM16 at `target_rate`.

    Raw PCM16LE is recognised by its Content-Type (`audio/L16;rate=N`) or by `sample_rate`.
    With `max_seconds`, audio longer than that raises AudioTooLong: refused from the header
    when it states the duration, and in any case decoding stops at the limit, so memory stays
    bounded by the limit (PCM16 at `target_rate`) plus one block, whatever the file claims.
    Raises AudioFormatError for unsupported or corrupt data.
    """
    if not data:
        raise AudioFormatError(f"The audio is empty; expected {INPUT_FORMATS_HELP}.")
    raw_rate = raw_rate_from_content_type(content_type) if content_type else None
    # A declared raw type wins over sniffing: PCM samples can look like an MP3 frame header.
    container = None if raw_rate else sniff(data)
    collector = _Collector(target_rate, max_seconds)
    if container is None and (raw_rate or sample_rate):
        rate = sample_rate or raw_rate or 16000
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioFormatError(f"Raw PCM16 rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE}.")
        if len(data) % 2:
            raise AudioFormatError("Raw PCM16 must have an even number of bytes.")
        collector.expect(len(data) / 2 / rate)
        collector.add(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate)
        return collector.result("pcm16")
    if container is None:
        raise AudioFormatError(f"Unsupported or corrupt audio; expected {INPUT_FORMATS_HELP}.")
    if container == "wav":
        _decode_soundfile(data, collector)
    else:
        _decode_av(data, container, collector)
    return collector.result(container)


class _Collector:
    """Mono float32 blocks at their source rate in; PCM16 at `target_rate` out, resampled as
    they come (soxr's stream), so nothing but the result grows. Past `max_seconds` of input it
    raises AudioTooLong."""

    def __init__(self, target_rate: int, max_seconds: float | None) -> None:
        self.target_rate = target_rate
        self.max_seconds = max_seconds
        self.seconds = 0.0  # decoded so far, in source time
        self._pcm = bytearray()
        self._rate = 0
        self._stream: soxr.ResampleStream | None = None

    def expect(self, seconds: float | None) -> None:
        """Refuse up front when the container's header states a duration over the limit."""
        if seconds is not None and self.max_seconds is not None and seconds > self.max_seconds:
            raise AudioTooLong(
                f"The audio lasts {seconds:.1f} s (from its header); "
                f"the limit is {self.max_seconds:g} s."
            )

    def add(self, samples: np.ndarray, rate: int) -> None:
        if rate != self._rate:
            if not MIN_DECODED_RATE <= rate <= MAX_DECODED_RATE:
                raise AudioFormatError(
                    f"The audio's rate {rate} Hz is outside {MIN_DECODED_RATE}-{MAX_DECODED_RATE}."
                )
            self._flush()
            self._rate = rate
            self._stream = (
                soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
                if rate != self.target_rate
                else None
            )
        self.seconds += samples.size / rate
        if self.max_seconds is not None and self.seconds > self.max_seconds:
            raise AudioTooLong(
                f"The audio lasts more than {self.max_seconds:g} s (decoding stopped there); "
                f"the limit is {self.max_seconds:g} s."
            )
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        self._pcm += _to_pcm16(self._stream.resample_chunk(samples) if self._stream else samples)

    def _flush(self) -> None:
        if self._stream is not None:
            tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._pcm += _to_pcm16(tail)
            self._stream = None

    def result(self, source_format: str) -> DecodedAudio:
        self._flush()
        if not self._rate:
            raise AudioFormatError(f"No audio decoded from the {source_format} data.")
        return DecodedAudio(bytes(self._pcm), self.target_rate, source_format)


def _decode_soundfile(data: bytes, collector: _Collector) -> None:
    """WAV through libsndfile, block by block (FLAC goes to FFmpeg: libsndfile cannot read a
    FLAC stream whose header leaves the length unknown, as a streaming encoder writes it)."""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            if 0 < sound.frames < UNKNOWN_FRAMES:
                collector.expect(sound.frames / sound.samplerate)
            block = max(1, MAX_BLOCK_BYTES // (4 * sound.channels))
            while len(samples := sound.read(block, dtype="float32", always_2d=True)):
                collector.add(samples.mean(axis=1), int(sound.samplerate))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioFormatError(f"Corrupt audio ({exc}); expected {INPUT_FORMATS_HELP}.") from exc


def _decode_av(data: bytes, container: str, collector: _Collector) -> None:
    try:
        with av.open(io.BytesIO(data), mode="r") as handle:
            if not handle.streams.audio:
                raise AudioFormatError(f"No audio stream in the {container} data.")
            if handle.duration and handle.duration > 0:
                collector.expect(handle.duration / av.time_base)
            for frame in handle.decode(audio=0):
                array = frame.to_ndarray().astype(np.float32)
                if frame.format.name.startswith(("s16",)):
                    array /= 32768.0
                elif frame.format.name.startswith("s32"):
                    array /= 2147483648.0
                if frame.format.is_planar:
                    mono = array.mean(axis=0)
                else:
                    mono = array.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                collector.add(mono, frame.sample_rate)
    except av.error.FFmpegError as exc:
        raise AudioFormatError(
            f"Corrupt {container} audio ({exc}); expected {INPUT_FORMATS_HELP}."
        ) from exc


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling of float32 mono samples (soxr, high quality)."""
    if src_rate == dst_rate or samples.size == 0:
        return samples
    return soxr.resample(samples, src_rate, dst_rate, quality="HQ")


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    if src_rate == dst_rate:
        return pcm
    return _to_pcm16(resample(_from_pcm16(pcm), src_rate, dst_rate))


class StreamResampler:
    """Resample a PCM16 stream chunk by chunk (e.g. 48 kHz microphone → 16 kHz STT)."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._stream = (
            soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality="HQ")
            if src_rate != dst_rate
            else None
        )

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        """Resample a chunk; `last=True` flushes, and the next chunk starts a new stream."""
        if self._stream is None:
            return pcm
        out = _to_pcm16(self._stream.resample_chunk(_from_pcm16(pcm), last=last))
        if last:
            self._stream.clear()
        return out


def _from_pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def _to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def encode(pcm: bytes, sample_rate: int, fmt: str) -> bytes:
    """Encode mono PCM16LE as `wav`, `pcm16`, `mp3` or `ogg` (Opus)."""
    if fmt == "pcm16":
        return pcm
    if fmt == "wav":
        buffer = io.BytesIO()
        soundfile.write(
            buffer, np.frombuffer(pcm, dtype="<i2"), sample_rate, format="WAV", subtype="PCM_16"
        )
        return buffer.getvalue()
    if fmt == "mp3":
        return _encode_av(pcm, sample_rate, "mp3", "libmp3lame", sample_rate)
    if fmt == "ogg":
        rate = min((r for r in OPUS_RATES if r >= sample_rate), default=48000)
        return _encode_av(resample_pcm16(pcm, sample_rate, rate), rate, "ogg", "libopus", rate)
    raise AudioFormatError(f"Unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}.")


def _encode_av(pcm: bytes, sample_rate: int, container: str, codec: str, rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


class Mp3StreamEncoder:
    """Encode PCM16 chunks into one continuous MP3 stream (bare MPEG frames, no tags), so
    the pieces can be sent as they come and still decode as a single file."""

    def __init__(self, sample_rate: int, bit_rate: int = 64000) -> None:
        self.sample_rate = sample_rate
        self._codec = av.CodecContext.create("libmp3lame", "w")
        self._codec.sample_rate = sample_rate
        self._codec.layout = "mono"
        self._codec.format = "s16p"
        self._codec.bit_rate = bit_rate
        self._codec.time_base = Fraction(1, sample_rate)
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").reshape(1, -1)
        if samples.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(samples, format="s16p", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        return b"".join(bytes(packet) for packet in self._codec.encode(frame))

    def flush(self) -> bytes:
        return b"".join(bytes(packet) for packet in self._codec.encode(None))


def convert(data: bytes, src_format: str, src_rate: int, fmt: str) -> EncodedAudio:
    """Turn an engine's audio (`mp3`, `pcm16` or `wav`) into output format `fmt`.

    MP3 into MP3 passes through untouched (edge-tts' own encoding); all else decodes to PCM16.
    """
    if fmt not in OUTPUT_FORMATS:
        raise AudioFormatError(f"Unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}.")
    if src_format == fmt == "mp3":
        duration = decode_audio(data, target_rate=src_rate).duration_s
        return EncodedAudio(data, src_rate, content_type_for("mp3", src_rate), duration)
    if src_format == "pcm16":
        pcm, rate = data, src_rate
    else:
        decoded = decode_audio(data, target_rate=src_rate)
        pcm, rate = decoded.pcm, decoded.sample_rate
    encoded = encode(pcm, rate, fmt)
    out_rate = min((r for r in OPUS_RATES if r >= rate), default=48000) if fmt == "ogg" else rate
    return EncodedAudio(encoded, out_rate, content_type_for(fmt, out_rate), len(pcm) / 2 / rate)
