"""Silero VAD on real speech (Piper English, espeak-ng Spanish), silence and noise."""

from __future__ import annotations

import pytest

from audio_pipeline.vad import VadConfig, VadEvent, VoiceActivityDetector

from .hearing_samples import energy_span_ms, espeak, noise, piper, silence

SENTENCE = "The weather is nice today and I would like a cup of coffee."


def feed(vad: VoiceActivityDetector, pcm: bytes, chunk: int = 3200) -> list[VadEvent]:
    events: list[VadEvent] = []
    for offset in range(0, len(pcm), chunk):
        events += vad.feed(pcm[offset : offset + chunk])
    return events


def kinds(events: list[VadEvent], *wanted: str) -> list[VadEvent]:
    return [e for e in events if e.kind in wanted]


def test_one_sentence_gives_one_start_and_one_stop_at_the_speech_edges():
    speech = piper(SENTENCE)
    first, last = energy_span_ms(speech)
    events = feed(VoiceActivityDetector(VadConfig()), silence(1) + speech + silence(1))
    assert [e.kind for e in kinds(events, "start", "stop")] == ["start", "stop"]
    start, stop = kinds(events, "start")[0], kinds(events, "stop")[0]
    assert abs(start.at_ms - (1000 + first)) <= 100
    assert abs(stop.at_ms - (1000 + last)) <= 250
    assert stop.duration_ms == pytest.approx(stop.at_ms - start.at_ms)
    pauses = kinds(events, "pause")
    assert pauses[-1].at_ms == stop.at_ms, "the stop confirms the last pause"
    assert len(kinds(events, "resume")) == len(pauses) - 1


def test_spanish_phrases_apart_are_separate_and_chunking_does_not_matter():
    phrase = espeak("Me gustaría reservar una mesa para dos personas")
    audio = silence(0.5) + phrase + silence(1.0) + phrase + silence(1.0)
    results = [feed(VoiceActivityDetector(VadConfig()), audio, size) for size in (320, 3200, 32000)]
    assert results[0] == results[1] == results[2]
    config = VadConfig(min_silence_ms=600)  # espeak pauses ~0.3 s between words of a phrase
    starts_stops = kinds(feed(VoiceActivityDetector(config), audio), "start", "stop")
    assert [e.kind for e in starts_stops] == ["start", "stop", "start", "stop"]
    length = len(phrase) / 32
    assert starts_stops[2].at_ms - starts_stops[0].at_ms == pytest.approx(length + 1000, abs=70)


@pytest.mark.parametrize("sound", ["silence", "noise"])
def test_silence_and_noise_are_not_speech(sound):
    audio = silence(3) if sound == "silence" else noise(3)
    vad = VoiceActivityDetector(VadConfig())
    assert feed(vad, audio) == []
    assert vad.flush() == []
    assert vad.position_ms == pytest.approx(3000, abs=32)


def test_min_speech_ignores_a_short_burst():
    burst = piper(SENTENCE)[int(32000 * 0.5) : int(32000 * 0.65)]  # 150 ms of a vowel
    audio = silence(0.5) + burst + silence(1)
    assert kinds(feed(VoiceActivityDetector(VadConfig(min_speech_ms=250)), audio), "start") == []
    assert len(kinds(feed(VoiceActivityDetector(VadConfig(min_speech_ms=64)), audio), "start")) == 1


def test_min_silence_joins_phrases_and_flush_closes_open_speech():
    phrase = piper("Hello there.")
    audio = silence(0.3) + phrase + silence(0.45) + phrase
    short = feed(VoiceActivityDetector(VadConfig(min_silence_ms=200)), audio + silence(0.5))
    assert len(kinds(short, "stop")) == 2
    vad = VoiceActivityDetector(VadConfig(min_silence_ms=900))
    events = feed(vad, audio)
    assert len(kinds(events, "start")) == 1 and kinds(events, "stop") == []
    assert vad.in_speech
    closing = vad.flush()
    assert [e.kind for e in closing][-1] == "stop"
    assert closing[-1].at_ms <= vad.position_ms
    assert not vad.in_speech


def test_reset_restarts_the_clock():
    vad = VoiceActivityDetector(VadConfig())
    first = feed(vad, silence(0.5) + piper("Hello there.") + silence(0.5))
    vad.reset()
    assert vad.position_ms == 0
    assert feed(vad, silence(0.5) + piper("Hello there.") + silence(0.5)) == first
