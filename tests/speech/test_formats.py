"""Audio decoding, resampling and encoding with the real codecs."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from audio_pipeline.formats import (
    AudioFormatError,
    Mp3StreamEncoder,
    StreamResampler,
    convert,
    decode_audio,
    encode,
    resample_pcm16,
)

from .conftest import tone


def peak_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm, dtype="<i2").astype(np.float64) ** 2)))


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_every_container_round_trips_at_every_rate(fmt: str, rate: int) -> None:
    decoded = decode_audio(encode(tone(440, rate), rate, fmt), target_rate=16000)
    assert decoded.source_format == fmt
    assert decoded.sample_rate == 16000
    assert decoded.duration_s == pytest.approx(1.0, abs=0.08)
    assert peak_hz(decoded.pcm, 16000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000])
def test_raw_pcm16_at_its_stated_rate(rate: int) -> None:
    decoded = decode_audio(
        tone(440, rate), content_type=f"audio/L16;rate={rate}", target_rate=16000
    )
    assert decoded.duration_s == pytest.approx(1.0, abs=0.002)
    assert peak_hz(decoded.pcm, 16000) == pytest.approx(440, abs=2)


def test_declared_raw_pcm_is_never_mistaken_for_a_container() -> None:
    pcm = b"\xff\xfb" + tone(440, 16000)[2:]  # starts like an MP3 frame header
    decoded = decode_audio(pcm, content_type="audio/L16;rate=16000", target_rate=16000)
    assert decoded.source_format == "pcm16" and decoded.duration_s == pytest.approx(1.0)


def test_resampling_filters_what_the_target_rate_cannot_carry() -> None:
    # A 10 kHz tone cannot exist at 16 kHz: a real resampler removes it; dropping samples
    # would fold it to a loud 6 kHz alias.
    source = tone(10_000, 48_000)
    assert rms(resample_pcm16(source, 48_000, 16_000)) < 0.01 * rms(source)
    dropped = np.frombuffer(source, dtype="<i2")[::3].tobytes()
    assert rms(dropped) > 0.5 * rms(source)


def test_webm_opus_and_flac_inputs_decode() -> None:
    pcm = resample_pcm16(tone(440, 16000), 16000, 48000)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    webm = decode_audio(buffer.getvalue(), target_rate=16000)
    assert webm.source_format == "webm"
    assert peak_hz(webm.pcm, 16000) == pytest.approx(440, abs=3)

    import soundfile

    flac = io.BytesIO()
    soundfile.write(flac, np.frombuffer(tone(440, 22050), dtype="<i2"), 22050, format="FLAC")
    assert decode_audio(flac.getvalue(), target_rate=16000).duration_s == pytest.approx(1.0)


def test_stereo_is_downmixed() -> None:
    import soundfile

    left = np.frombuffer(tone(440, 16000), dtype="<i2")
    stereo = np.stack([left, left], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, 16000, format="WAV", subtype="PCM_16")
    decoded = decode_audio(buffer.getvalue(), target_rate=16000)
    assert len(decoded.pcm) == len(left) * 2
    assert rms(decoded.pcm) == pytest.approx(rms(left.tobytes()), rel=0.01)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"not audio at all, just text", ""),
        (b"", "audio/wav"),
        (b"RIFF\x10\x00\x00\x00WAVEjunkjunk", "audio/wav"),
        (b"OggS" + bytes(200), "audio/ogg"),
        (b"\x1a\x45\xdf\xa3" + bytes(100), "audio/webm"),
        (b"ID3" + bytes(100), "audio/mpeg"),
    ],
)
def test_unknown_or_corrupt_audio_names_what_was_expected(data: bytes, content_type: str) -> None:
    with pytest.raises(AudioFormatError, match=r"expected|No audio"):
        decode_audio(data, content_type=content_type, target_rate=16000)


def test_raw_pcm_rate_out_of_range_and_odd_length_are_refused() -> None:
    with pytest.raises(AudioFormatError, match="outside"):
        decode_audio(bytes(100), content_type="audio/L16;rate=96000", target_rate=16000)
    with pytest.raises(AudioFormatError, match="even"):
        decode_audio(bytes(101), content_type="audio/L16;rate=16000", target_rate=16000)


def test_convert_passes_mp3_through_and_re_encodes_the_rest() -> None:
    mp3 = encode(tone(300, 24000), 24000, "mp3")
    assert convert(mp3, "mp3", 24000, "mp3").data == mp3
    as_wav = convert(mp3, "mp3", 24000, "wav")
    assert as_wav.content_type == "audio/wav" and as_wav.data[:4] == b"RIFF"
    pcm = convert(tone(300, 22050), "pcm16", 22050, "pcm16")
    assert pcm.content_type == "audio/L16;rate=22050;channels=1"
    ogg = convert(tone(300, 22050), "pcm16", 22050, "ogg")
    assert ogg.content_type == "audio/ogg" and ogg.sample_rate == 24000
    with pytest.raises(AudioFormatError):
        convert(mp3, "mp3", 24000, "flac")


def test_stream_resampler_matches_whole_file_resampling() -> None:
    source = tone(440, 48000, seconds=2.0)
    resampler = StreamResampler(48000, 16000)
    step = 48000 * 2 // 50  # 20 ms chunks
    streamed = b"".join(
        resampler.process(source[i : i + step]) for i in range(0, len(source), step)
    ) + resampler.process(b"", last=True)
    assert abs(len(streamed) - len(source) // 3) <= 4
    assert peak_hz(streamed, 16000) == pytest.approx(440, abs=1)


def test_mp3_stream_encoder_pieces_decode_as_one_file() -> None:
    encoder = Mp3StreamEncoder(22050)
    pieces = [encoder.encode(tone(440, 22050)), encoder.encode(tone(440, 22050, 0.5))]
    pieces.append(encoder.flush())
    assert pieces[0], "audio comes out before the stream ends"
    decoded = decode_audio(b"".join(pieces), target_rate=16000)
    assert decoded.duration_s == pytest.approx(1.5, abs=0.1)
    assert peak_hz(decoded.pcm, 16000) == pytest.approx(440, abs=3)
