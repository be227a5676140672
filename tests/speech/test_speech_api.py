"""HTTP speech services through the real ASGI stack: auth, formats in and out, limits, fallback."""

from __future__ import annotations

import io

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audio_pipeline.formats import decode_audio, encode, resample_pcm16

from .conftest import key_words_found

KEY_WORDS = ("weather", "nice", "today", "like", "cup", "coffee")
pytestmark = pytest.mark.django_db(transaction=True)


class AuthedClient:
    """AsyncClient that sends the bearer token on every request."""

    def __init__(self, token: str) -> None:
        self._client = AsyncClient()
        self._headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **kwargs):
        return await self._client.get(path, headers=self._headers, **kwargs)

    async def post(self, path: str, data=None, **kwargs):
        return await self._client.post(path, data, headers=self._headers, **kwargs)


@pytest.fixture
async def client() -> AuthedClient:
    from django.contrib.auth import get_user_model

    from accounts.services import token_create

    def make() -> str:
        user = get_user_model().objects.create_user("speaker", password="x-pass-123456")
        return token_create(user=user).plaintext

    token = await sync_to_async(make)()
    return AuthedClient(token)


async def body_of(response) -> bytes:
    if response.streaming:
        return b"".join([chunk async for chunk in response.streaming_content])
    return response.content


async def tts(client, **payload):
    return await client.post("/api/tts", payload, content_type="application/json")


async def test_auth_is_required_on_every_speech_endpoint():
    anonymous = AsyncClient()
    for response in (
        await anonymous.post("/api/stt", b"x", content_type="audio/wav"),
        await anonymous.post("/api/tts", {"text": "hi"}, content_type="application/json"),
        await anonymous.get("/api/voices"),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize("engine", ["whisper", "pocketsphinx"])
async def test_round_trip_piper_tts_to_offline_stt(client, english_text, settings, engine):
    settings.STT_ENGINES = [engine]
    response = await tts(client, text=english_text, language="en", format="wav")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert response["X-Voz-Engine"] == "piper"
    wav = await body_of(response)
    result = await client.post("/api/stt?language=en", wav, content_type="audio/wav")
    assert result.status_code == 200, result.content
    data = result.json()
    assert data["engine"] == engine and data["language"] == "en"
    assert key_words_found(data["text"], KEY_WORDS, 4), data["text"]
    assert data["duration_s"] == pytest.approx(
        decode_audio(wav, target_rate=16000).duration_s, abs=0.001
    )
    assert data["words"] and set(data["words"][0]) == {"word", "start", "end", "conf"}


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("mp3", "audio/mpeg"),
        ("ogg", "audio/ogg"),
        ("wav", "audio/wav"),
        ("pcm16", "audio/L16;rate=22050;channels=1"),
    ],
)
async def test_every_output_format_decodes(client, fmt, content_type):
    response = await tts(client, text="Good morning. How are you?", format=fmt)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Voz-Engine"] == "piper"
    data = await body_of(response)
    decoded = decode_audio(data, content_type=content_type, target_rate=16000)
    assert 1.1 < decoded.duration_s < 5.0  # both sentences: Piper yields one chunk each
    assert response.streaming == (fmt in ("mp3", "pcm16"))


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg", "pcm16-48k", "multipart", "flac"])
async def test_every_input_format_is_recognised(client, english_speech, fmt):
    pcm, rate = english_speech
    if fmt == "pcm16-48k":
        body, content_type = resample_pcm16(pcm, rate, 48000), "audio/L16;rate=48000"
    elif fmt == "flac":
        import numpy as np
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, np.frombuffer(pcm, dtype="<i2"), rate, format="FLAC")
        body, content_type = buffer.getvalue(), "audio/flac"
    elif fmt == "multipart":
        upload = io.BytesIO(encode(pcm, rate, "wav"))
        upload.name = "speech.wav"
        response = await client.post("/api/stt", {"file": upload, "language": "en"})
        assert response.status_code == 200, response.content
        assert key_words_found(response.json()["text"], KEY_WORDS, 3)
        return
    else:
        body, content_type = encode(pcm, rate, fmt), f"audio/{fmt}"
    response = await client.post("/api/stt", body, content_type=content_type)
    assert response.status_code == 200, response.content
    assert key_words_found(response.json()["text"], KEY_WORDS, 3), response.json()["text"]


async def test_edge_unreachable_falls_over_and_breaker_skips_it(client):
    first = await tts(client, text="Hello.", format="mp3")
    assert first.status_code == 200 and first["X-Voz-Engine"] == "piper"
    await body_of(first)
    voices = (await client.get("/api/voices")).json()["engines"]
    edge = next(e for e in voices if e["name"] == "edge")
    assert edge["available"] is False and "circuit open" in edge["reason"]


async def test_spanish_tts_is_served_by_espeak_when_edge_is_down(client):
    response = await tts(client, text="Hola, ¿qué tal?", language="es", format="wav")
    assert response.status_code == 200
    assert response["X-Voz-Engine"] == "espeak"
    assert decode_audio(await body_of(response), target_rate=16000).duration_s > 0.5


async def test_upload_too_large(client, settings, english_wav):
    settings.STT_MAX_UPLOAD_BYTES = 1000
    response = await client.post("/api/stt", english_wav, content_type="audio/wav")
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    upload = io.BytesIO(english_wav)
    upload.name = "a.wav"
    response = await client.post("/api/stt", {"file": upload})
    assert response.status_code == 413


async def test_body_over_the_http_limit_is_413_too(client, settings, english_wav):
    settings.STT_MAX_UPLOAD_BYTES = 10 * len(english_wav)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = await client.post("/api/stt", english_wav, content_type="audio/wav")
    assert response.status_code == 413
    assert "HTTP_MAX_BODY_BYTES" in response.json()["detail"]


async def test_audio_too_long(client, settings, english_wav):
    settings.STT_MAX_SECONDS = 1.0
    response = await client.post("/api/stt", english_wav, content_type="audio/wav")
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "audio_too_long" and "limit is 1 s" in body["detail"]


async def test_a_long_flac_of_silence_is_413_before_it_is_decoded(client):
    from .test_decode_bounds import silent_flac

    for header in (True, False):  # 30 min of silence in 335 KB (issue 21 item 2)
        body = silent_flac(1800, header=header)
        response = await client.post("/api/stt", body, content_type="audio/flac")
        assert response.status_code == 413, response.content
        answer = response.json()
        assert answer["code"] == "audio_too_long" and "the limit is 120 s" in answer["detail"]


async def test_a_rate_of_thousands_of_digits_is_415_naming_the_range(client):
    for content_type in (f"audio/L16;rate={'9' * 5000}", f"audio/pcm;rate={'1' * 5000}"):
        response = await client.post("/api/stt", bytes(3200), content_type=content_type)
        assert response.status_code == 415, response.content
        assert "outside 8000-48000 Hz" in response.json()["detail"]


async def test_corrupt_or_unknown_audio_is_415_naming_the_formats(client):
    for data, content_type in [
        (b"hello world" * 10, "audio/wav"),
        (b"OggS" + bytes(99), "audio/ogg"),
    ]:
        response = await client.post("/api/stt", data, content_type=content_type)
        assert response.status_code == 415
        body = response.json()
        assert body["code"] == "unsupported_audio" and "WAV" in body["detail"]


async def test_empty_body_and_unsupported_language(client, settings, english_wav, tmp_path):
    response = await client.post("/api/stt", b"", content_type="audio/wav")
    assert response.status_code == 422 and response.json()["code"] == "no_audio"
    settings.VOSK_MODELS, settings.VOSK_MODEL_PATH, settings.MODELS_DIR = {}, "", tmp_path
    settings.STT_ENGINES = ["vosk", "pocketsphinx"]  # Whisper would hear Spanish.
    response = await client.post("/api/stt?language=es", english_wav, content_type="audio/wav")
    assert response.status_code == 422 and response.json()["code"] == "language_unsupported"
    response = await client.post("/api/stt?language=1!", english_wav, content_type="audio/wav")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


async def test_a_language_whisper_does_not_know_is_422_not_500(client, settings, english_wav):
    """A well-formed tag no engine knows ("zz") reached faster-whisper, whose ValueError was
    a 500; now Whisper says it does not know it, and the API answers language_unsupported."""
    settings.STT_ENGINES = ["whisper"]
    for language in ("zz", "qq-XX"):
        response = await client.post(
            f"/api/stt?language={language}", english_wav, content_type="audio/wav"
        )
        assert response.status_code == 422, response.content
        body = response.json()
        assert body["code"] == "language_unsupported"
        assert "Whisper does not know" in body["detail"]


async def test_tts_limits_and_unknown_voice(client, settings):
    settings.TTS_MAX_CHARS = 20
    response = await tts(client, text="x" * 21)
    assert response.status_code == 422 and response.json()["code"] == "text_too_long"
    response = await tts(client, text="Hello", voice="Nobody")
    assert response.status_code == 422 and response.json()["code"] == "unknown_voice"
    response = await tts(client, text="Hello", format="aiff")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    response = await tts(client, text="   ")
    assert response.status_code == 422


async def test_tts_with_an_explicit_voice_reports_it(client):
    response = await tts(client, text="Hola.", language="es", voice="espeak:es-419", format="wav")
    assert response.status_code == 200
    assert response["X-Voz-Engine"] == "espeak" and response["X-Voz-Voice"] == "es-419"


async def test_no_engine_left_is_503(client, settings):
    settings.TTS_ESPEAK_BINARY = "no-such-espeak"
    response = await tts(client, text="Hola.", language="es")
    assert response.status_code == 503 and response.json()["code"] == "tts_unavailable"


async def test_readyz_shows_speech_engines(client):
    body = (await AsyncClient().get("/readyz")).json()
    assert body["details"]["stt"]["en"]["engine"] in ("vosk", "whisper")
    assert body["details"]["stt"]["es"]["engine"] in ("vosk", "whisper"), "Spanish offline"
    assert body["details"]["turn"]["detector"] in ("smart_turn", "silence")
    assert body["details"]["tts"]["es"]["chain"] == ["edge", "piper", "espeak"]
    assert "espeak" in body["details"]["tts"]["es"]["usable"]
