"""POST /api/tts speaks a text piece by piece (audio_pipeline/tts/pieces.py) and caps each
user's concurrent jobs (audio_pipeline/tts_slots.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from audio_pipeline.tts import synthesize_with_fallback
from audio_pipeline.tts.pieces import split_pieces, synthesize_pieces
from audio_pipeline.tts_slots import held
from tests.speech.test_speech_api import AuthedClient, body_of, client, tts  # noqa: F401

# The red team's texts that held a Piper worker for 20 s in one piece.
LONG_TEXTS = {
    "digits": "1" * 1900,
    "thai": "สวัสดีครับ ยินดีต้อนรับ" * 80,
    "rtl": "שלום עולם، مرحبا بالعالم " * 75,
    "formula": "x^2+" * 450,
}
pytestmark = pytest.mark.django_db(transaction=True)
NORMAL = (
    "Hello there. The weather is nice today, and I would like a cup of coffee. "
    "Would you like one too? Let us walk to the cafe by the river."
)


@pytest.mark.parametrize("name", LONG_TEXTS)
def test_every_piece_is_at_most_sentence_max_chars_and_nothing_is_lost(name, settings):
    text = LONG_TEXTS[name]
    pieces = split_pieces(text)
    assert len(pieces) > 1
    assert all(len(piece) <= settings.SENTENCE_MAX_CHARS for piece in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_sentences_are_the_pieces_of_a_normal_text():
    assert [p.strip() for p in split_pieces(NORMAL)] == [
        "Hello there.",
        "The weather is nice today, and I would like a cup of coffee.",
        "Would you like one too?",
        "Let us walk to the cafe by the river.",
    ]


async def pcm_seconds(stream) -> float:
    data = b"".join([chunk.data async for chunk in stream])
    return len(data) / 2 / stream.first.sample_rate


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_a_normal_text_sounds_as_long_in_pieces_as_whole(engine, settings):
    settings.TTS_ENGINES = [engine]
    whole = await pcm_seconds(await synthesize_with_fallback(NORMAL, language="en"))
    pieces = await synthesize_pieces(NORMAL, language="en")
    assert pieces.engine == engine
    in_pieces = await pcm_seconds(pieces)
    assert abs(in_pieces - whole) < 0.25 * whole, (in_pieces, whole)


async def test_a_piece_with_nothing_to_say_is_skipped(settings):
    settings.TTS_ENGINES = ["espeak"]
    stream = await synthesize_pieces("😀😀.\nHello there.\n🎉🎉!\nGoodbye.", language="en")
    assert await pcm_seconds(stream) > 0.8


async def other_client() -> AuthedClient:
    from accounts.services import token_create

    def make() -> str:
        user = get_user_model().objects.create_user("bystander", password="x-pass-123456")
        return token_create(user=user).plaintext

    return AuthedClient(await sync_to_async(make)())


async def test_a_users_third_concurrent_job_is_429_and_others_are_served(client, settings):  # noqa: F811
    settings.TTS_ENGINES = ["espeak"]
    settings.TTS_CONCURRENT_PER_USER = 2
    # Streamed responses not yet read: each holds its slot until its body ends.
    running = [await tts(client, text=NORMAL, format="pcm16") for _ in range(2)]
    assert [r.status_code for r in running] == [200, 200]
    refused = await tts(client, text="Hello there.", format="pcm16")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert refused["Retry-After"] == "1"
    served = await tts(await other_client(), text="Hello there.", format="wav")
    assert served.status_code == 200
    for response in running:
        assert len(await body_of(response)) > 20_000
    again = await tts(client, text="Hello there.", format="wav")
    assert again.status_code == 200
    user = await get_user_model().objects.aget(username="speaker")
    assert held(user.pk) == 0


async def test_refused_requests_give_their_slot_back(client, settings):  # noqa: F811
    settings.TTS_ENGINES = ["espeak"]
    settings.TTS_CONCURRENT_PER_USER = 1
    for _ in range(3):
        response = await tts(client, text="😀😀😀")
        assert response.status_code == 422 and response.json()["code"] == "nothing_to_say"
    assert (await tts(client, text="Hello there.", format="wav")).status_code == 200
