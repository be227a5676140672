"""What TTS says is what a person reads aloud (issue 14 item 5), at every door."""

from __future__ import annotations

import pytest

from audio_pipeline.spoken import spoken_text, tamed
from audio_pipeline.tts import synthesize_with_fallback


@pytest.mark.parametrize(
    ("text", "language", "spoken"),
    [
        ("Great job! 😀 See you soon.", "en", "Great job! See you soon."),
        ("👍🏽 Listo 🇪🇸.", "es", "Listo."),
        ("1️⃣ first ✅ done → next 👨‍👩‍👧", "en", "1 first done next"),
        ("It costs $5, about 50% off.", "en", "It costs 5 dollars, about 50 percent off."),
        (
            "Cuesta 5 € y hace 20°C; el 30 % falta.",
            "es",
            "Cuesta 5 euros y hace 20 grados Celsius; el 30 por ciento falta.",
        ),
        (
            "Tom & Jerry, episode #3: 2+2=4.",
            "en",
            "Tom and Jerry, episode number 3: 2 plus 2 equals 4.",
        ),
        ("안녕하세요 😀 반가워요.", "ko", "안녕하세요 반가워요."),
        ("😀🎉", "en", ""),
    ],
)
def test_spoken_text(text, language, spoken):
    assert spoken_text(text, language) == spoken


async def _seconds(text: str) -> float:
    stream = await synthesize_with_fallback(text, language="en", engines=["espeak"])
    data = b"".join([chunk.data async for chunk in stream])
    return len(data) / 2 / stream.first.sample_rate


async def test_an_emoji_adds_no_speech():
    """espeak-ng reads 😀 as "grinning face" unless it is removed before synthesis."""
    with_emoji = await _seconds("Great job! 😀 See you soon.")
    without = await _seconds("Great job! See you soon.")
    assert with_emoji == pytest.approx(without, rel=0.02)


@pytest.mark.django_db
def test_http_tts_of_only_emoji_is_a_clear_422(api):
    response = api.post("/api/tts", {"text": "😀🎉", "language": "en"})
    assert response.status_code == 422
    assert response.json()["code"] == "nothing_to_say"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s's's's's's's's's's's's'", "s's's'"),
        ("Hahahahaha!!!!!! Hmmmmm......", "Hahahaha!!! Hmmm..."),  # "ah" × 4 → × 3.
        ("1000000 and 2222222 stay", "1000000 and 2222222 stay"),
        ("a" * 100, "aaa"),
        ("x" + "abcdefghij" * 5, "xabcdefghijabcdefghijabcdefghijabcdefghi jabcdefghij"),
        ("Mississippi bookkeeper", "Mississippi bookkeeper"),
    ],
)
def test_tamed_cuts_repeats_and_splits_overlong_words(text, expected):
    assert tamed(text, repeats=3, word_chars=40) == expected


def test_tamed_with_zero_changes_nothing():
    text = "s'" * 110
    assert tamed(text, repeats=0, word_chars=0) == text
