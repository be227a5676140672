"""Audio formats: decode what clients send into mono PCM16, encode what engines make for clients.

Decoding sniffs the container (WAV, FLAC, WebM/Opus, OGG/Opus or Vorbis, MP3) or takes raw
PCM16LE at a stated rate, downmixes to mono and resamples with soxr (a real band-limited
resampler; samples are never dropped). Encoding writes WAV, raw PCM16, MP3 and OGG/Opus.
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


class AudioFormatError(ValueError):
    """The audio is not in a supported format, or is corrupt."""


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
    """`audio/L16;rate=22050` → 22050; None when it is not a raw PCM type."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in RAW_TYPES:
        return None
    match = re.search(r"rate=(\d+)", content_type, re.IGNORECASE)
    return int(match.group(1)) if match else 16000


def decode_audio(
    data: bytes, *, content_type: str = "", sample_rate: int | None = None, target_rate: int
) -> DecodedAudio:
    """Decode any supported input into mono PCM16 at `target_rate`.

    Raw PCM16LE is recognised by its Content-Type (`audio/L16;rate=N`) or by `sample_rate`.
    """
    if not data:
        raise AudioFormatError(f"The audio is empty; expected {INPUT_FORMATS_HELP}.")
    raw_rate = raw_rate_from_content_type(content_type) if content_type else None
    # A declared raw type wins over sniffing: PCM samples can look like an MP3 frame header.
    container = None if raw_rate else sniff(data)
    if container is None and (raw_rate or sample_rate):
        rate = sample_rate or raw_rate or 16000
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioFormatError(f"Raw PCM16 rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE}.")
        if len(data) % 2:
            raise AudioFormatError("Raw PCM16 must have an even number of bytes.")
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return DecodedAudio(_to_pcm16(resample(samples, rate, target_rate)), target_rate, "pcm16")
    if container is None:
        raise AudioFormatError(f"Unsupported or corrupt audio; expected {INPUT_FORMATS_HELP}.")
    samples, rate = (
        _decode_soundfile(data) if container in ("wav", "flac") else _decode_av(data, container)
    )
    return DecodedAudio(_to_pcm16(resample(samples, rate, target_rate)), target_rate, container)


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int]:
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioFormatError(f"Corrupt audio ({exc}); expected {INPUT_FORMATS_HELP}.") from exc
    return samples.mean(axis=1), int(rate)


def _decode_av(data: bytes, container: str) -> tuple[np.ndarray, int]:
    parts: list[np.ndarray] = []
    rate = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as handle:
            if not handle.streams.audio:
                raise AudioFormatError(f"No audio stream in the {container} data.")
            for frame in handle.decode(audio=0):
                rate = frame.sample_rate
                array = frame.to_ndarray().astype(np.float32)
                if frame.format.name.startswith(("s16",)):
                    array /= 32768.0
                elif frame.format.name.startswith("s32"):
                    array /= 2147483648.0
                if frame.format.is_planar:
                    parts.append(array.mean(axis=0))
                else:
                    channels = len(frame.layout.channels)
                    parts.append(array.reshape(-1, channels).mean(axis=1))
    except av.error.FFmpegError as exc:
        raise AudioFormatError(
            f"Corrupt {container} audio ({exc}); expected {INPUT_FORMATS_HELP}."
        ) from exc
    if not parts or not rate:
        raise AudioFormatError(f"No audio decoded from the {container} data.")
    return np.concatenate(parts), rate


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
