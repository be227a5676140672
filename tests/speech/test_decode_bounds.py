"""Decoding stops at the duration limit (issue 21 item 2): memory stays bounded whatever a small
file claims or holds, for every accepted format."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile

from audio_pipeline.formats import AudioFormatError, AudioTooLong, decode_audio, encode

from ..servers import ROOT

LIMIT_S = 120.0
# The limit's result: PCM16 mono at the STT rate (16 kHz), 3.84 MB for 120 s.
LIMIT_PCM_BYTES = int(LIMIT_S * 16000 * 2)


def silent_flac(seconds: int, rate: int = 48000, channels: int = 2, *, header: bool = True):
    """A FLAC of silence (30 min of 48 kHz stereo: 335 KB, 691 MB as float32 samples); without
    `header` its STREAMINFO leaves the length unknown, as a streaming encoder writes it."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, channels, format="FLAC") as sound:
        block = np.zeros((rate * 10, channels), dtype="int16")
        for _ in range(seconds // 10):
            sound.write(block)
    data = bytearray(buffer.getvalue())
    if not header:  # total samples: the low 4 bits of byte 21 and bytes 22-25
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


def live_webm(pcm: bytes, rate: int) -> bytes:
    """WebM/Opus as a browser's MediaRecorder streams it: no duration in the header."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


MEASURE = """
import json, resource, sys
from audio_pipeline.formats import AudioTooLong, decode_audio, encode
data = open(sys.argv[1], "rb").read()
decode_audio(encode(bytes(32000), 16000, "wav"), target_rate=16000)  # codecs loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_audio(data, target_rate=16000, max_seconds=float(sys.argv[2]))
    error = ""
except AudioTooLong as exc:
    error = str(exc)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"error": error, "grown": grown}))
"""


@pytest.mark.parametrize("header", [True, False], ids=["length-in-header", "length-unknown"])
def test_a_long_flac_of_silence_is_refused_in_bounded_memory(tmp_path, header) -> None:
    # The example: before, 30 min of silence (a 335 KB file) took 990 MB to refuse.
    path = tmp_path / "silence.flac"
    path.write_bytes(silent_flac(1800, header=header))
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(LIMIT_S)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(run.stdout)
    expected = "from its header" if header else "decoding stopped there"
    assert expected in measured["error"] and "the limit is 120 s" in measured["error"]
    assert measured["grown"] < 6 * LIMIT_PCM_BYTES, measured  # 14 MB measured without header


def _in(fmt: str, seconds: int, rate: int = 8000) -> tuple[bytes, str]:
    pcm = bytes(rate * seconds * 2)
    if fmt == "pcm16":
        return pcm, f"audio/L16;rate={rate}"
    if fmt == "flac":
        return silent_flac(seconds, rate, 1), ""
    if fmt == "flac-no-length":
        return silent_flac(seconds, rate, 1, header=False), ""
    if fmt == "webm-no-length":
        return live_webm(pcm, rate), ""
    return encode(pcm, rate, fmt), ""


FORMATS = ["wav", "flac", "flac-no-length", "mp3", "ogg", "webm-no-length", "pcm16"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_stops_at_the_limit_and_keeps_shorter_audio(fmt: str) -> None:
    data, content_type = _in(fmt, 130)
    with pytest.raises(AudioTooLong, match="the limit is 120 s"):
        decode_audio(data, content_type=content_type, target_rate=16000, max_seconds=LIMIT_S)
    data, content_type = _in(fmt, 10)
    decoded = decode_audio(data, content_type=content_type, target_rate=16000, max_seconds=LIMIT_S)
    assert decoded.duration_s == pytest.approx(10, abs=0.1)


@pytest.mark.parametrize("rate", ["9" * 5000, "", "1" * 7])
def test_a_raw_rate_of_thousands_of_digits_is_a_format_error(rate: str) -> None:
    with pytest.raises(AudioFormatError, match="outside 8000-48000"):
        decode_audio(bytes(320), content_type=f"audio/L16;rate={rate}", target_rate=16000)
