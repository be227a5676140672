"""Issue 21, item 3: one user's bad voice setting must not disable TTS for everyone.

Voices are checked on every door that saves them (the service, the REST API, the admin); a
voice that still reaches an engine (a character saved before the check, an engine installed
later) fails that user's sentences only: the engine's breaker stays closed, and no other user
ever sees that user's setting (the breaker's reason is shown to everyone)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError

from audio_pipeline.tts import TtsFailed, breaker, engines_report, synthesize_with_fallback
from characters import services
from characters.models import Character
from tests.voice_helpers import connect, events_until, send, start_session

PRIVATE = "no-such-voice"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("voices", "message"),
    [
        ({"espeak": PRIVATE}, "Engine 'espeak' has no voice 'no-such-voice'"),
        ({"piper": "es_ES-nobody"}, "Engine 'piper' has no voice 'es_ES-nobody'"),
        ({"edge": "Nobody"}, "Engine 'edge' has no voice 'Nobody'"),
        ({"edge": "en-us-AriaNeural"}, "Engine 'edge' has no voice 'en-us-AriaNeural'"),
        ({"festival": "kal"}, "Unknown TTS engine 'festival'"),
    ],
)
def test_the_service_refuses_a_voice_no_engine_has(user, voices, message):
    with pytest.raises(ValidationError) as info:
        services.character_create(owner=user, name="X", description="Y", voices=voices)
    assert message in str(info.value.message_dict["voices"])
    assert not Character.objects.exists()


@pytest.mark.django_db
def test_the_service_accepts_voices_the_engines_have(user):
    voices = {"edge": "en-US-GuyNeural", "piper": "en_US-joe-medium", "espeak": "en-us"}
    character = services.character_create(owner=user, name="X", description="Y", voices=voices)
    assert character.voices == voices


@pytest.mark.django_db
def test_the_api_refuses_a_bad_voice_on_create_and_on_patch(api, character):
    response = api.post(
        "/api/characters", {"name": "X", "description": "Y", "voices": {"espeak": PRIVATE}}
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert [e["field"] for e in body["errors"]] == ["voices"]
    assert PRIVATE in body["detail"]

    response = api.patch(f"/api/characters/{character.id}", {"voices": {"espeak": PRIVATE}})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["voices"]
    character.refresh_from_db()
    assert character.voices == {"edge": "es-ES-ElviraNeural"}


@pytest.mark.django_db
def test_the_admin_refuses_a_bad_voice(client, staff_user, character):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    response = client.post(
        f"/admin/characters/character/{character.id}/change/",
        {
            "name": character.name,
            "description": character.description,
            "language": "es",
            "greeting": "",
            "voices": json.dumps({"espeak": PRIVATE}),
            "model_name": "",
            "instances-TOTAL_FORMS": "0",
            "instances-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # The form again, with the error.
    assert "has no voice" in response.content.decode()
    character.refresh_from_db()
    assert character.voices == {"edge": "es-ES-ElviraNeural"}


async def test_a_voice_an_engine_lacks_fails_that_request_only(settings):
    settings.TTS_ESPEAK_IN_PROCESS = True
    for _ in range(3):
        with pytest.raises(TtsFailed, match=PRIVATE):
            await synthesize_with_fallback(
                "Hello.", language="en", voices={"espeak": PRIVATE}, engines=["espeak"]
            )
    assert breaker("espeak").allow()
    stream = await synthesize_with_fallback("Hello.", language="en", engines=["espeak"])
    assert stream.engine == "espeak"
    assert len(b"".join([chunk.data async for chunk in stream])) > 5_000


@pytest.mark.django_db(transaction=True)
async def test_a_saved_bad_voice_costs_its_owner_only(
    token, user, make_character, make_instance, fake_openai, other_api, settings
):
    """A character saved before voices were checked: its owner's sentences fail (the message
    names the owner's own voice); another user's speech and GET /api/voices never see it."""
    settings.TTS_ENGINES = ["espeak"]

    def legacy_character():
        character = make_character(user, name="Old Nova")
        Character.objects.filter(pk=character.pk).update(voices={"espeak": PRIVATE})
        make_instance(user, "oldnova", character=character)

    await sync_to_async(legacy_character)()
    fake_openai.script("Hello there.")
    ws = await connect(token)
    await start_session(ws, "oldnova", output_audio={"format": "wav"})
    await send(ws, {"type": "input_text", "text": "Hi"})
    events = await events_until(ws, "metrics", timeout=60)
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["tts_failed"] and PRIVATE in errors[0]["message"]
    await ws.disconnect()

    assert breaker("espeak").allow()
    voices = await sync_to_async(other_api.get)("/api/voices")
    assert PRIVATE not in voices.content.decode()
    espeak = next(e for e in voices.json()["engines"] if e["name"] == "espeak")
    assert espeak["available"] is True
    spoken = await sync_to_async(other_api.post)("/api/tts", {"text": "Hi.", "format": "wav"})
    assert spoken.status_code == 200 and spoken["X-Voz-Engine"] == "espeak"
    assert PRIVATE not in json.dumps(engines_report())


async def test_an_engine_failure_still_opens_the_breaker(settings):
    """What the breaker is for: the engine itself down (edge unreachable here)."""
    stream = await synthesize_with_fallback("Hello.", language="en", engines=["edge", "espeak"])
    assert stream.engine == "espeak"
    assert not breaker("edge").allow()
    await stream.aclose()
