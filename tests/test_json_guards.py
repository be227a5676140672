"""Issue 21 items 4 and 6 on the HTTP doors: a body is checked for what it is, not for what its
Content-Type says; NaN, Infinity and numbers of thousands of digits are refused with a clear
error; nothing we answer is invalid JSON; an SSE chat stream always ends with `done` or `error`.
These run on SQLite and, in ./scripts/test's second pass, on PostgreSQL."""

from __future__ import annotations

import json
import math

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from characters.models import Character, Message
from realtime import strict_json
from tests.fake_openai import Reply

pytestmark = pytest.mark.django_db

# What a client may put in Content-Type (or leave out) with a JSON body; ninja parses them all.
CONTENT_TYPES = [
    "application/octet-stream",
    "text/plain",
    None,
    "",
    "application/json; charset=latin-1",
    "application/x-www-form-urlencoded",
]
BAD_TEXT = ['"Ro\\u0000sa"', '"Ro\\ud83dsa"']


def strict(raw: bytes | str):
    """Parse what the server sent the way a browser's JSON.parse would (no NaN, no Infinity)."""

    def refuse(name: str):
        raise AssertionError(f"the server sent {name}, which is not JSON")

    return json.loads(raw, parse_constant=refuse)


def send(api, method: str, path: str, body: str, content_type: str | None):
    """`body` as sent by a careless client: any Content-Type, or none at all."""
    return api.client.generic(
        method.upper(), path, body, content_type=content_type, headers=api._headers()
    )


def _assert_refused(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = strict(response.content)
    assert body["code"] == code
    if field is not None:
        assert body["errors"][0]["field"] == field
    return body


@pytest.mark.parametrize("content_type", CONTENT_TYPES, ids=lambda c: repr(c))
@pytest.mark.parametrize("raw", BAD_TEXT, ids=["nul", "lone-surrogate"])
def test_unstorable_text_is_422_whatever_the_content_type(
    api, character, instance, raw, content_type
):
    body = lambda field: f'{{"{field}": {raw}}}'  # noqa: E731
    writes = [
        ("post", "/api/characters", f'{{"name": {raw}, "description": "x"}}', "name"),
        ("patch", f"/api/characters/{character.id}", body("greeting"), "greeting"),
        ("post", "/api/instances", f'{{"character_id": "{character.id}", "name": {raw}}}', "name"),
        ("patch", f"/api/instances/{instance.id}", body("memory"), "memory"),
        ("put", f"/api/instances/{instance.id}/memory", body("text"), "text"),
        ("post", f"/api/instances/{instance.id}/chat", body("text"), "text"),
        ("post", f"/api/instances/{instance.id}/chat?stream=1", body("text"), "text"),
        ("post", "/api/tts", body("text"), "text"),
        (
            "patch",
            f"/api/characters/{character.id}",
            f'{{"voices": {{"espeak": {raw}}}}}',
            "voices.espeak",
        ),
    ]
    for method, path, payload, field in writes:
        response = send(api, method, path, payload, content_type)
        _assert_refused(response, 422, "validation_error", field)
    instance.refresh_from_db()
    character.refresh_from_db()
    assert instance.memory == "Vive en Madrid."
    assert character.voices in ({}, None) or "espeak" not in character.voices
    assert Character.objects.count() == 1
    assert not Message.objects.exists()


def test_sse_chat_with_unstorable_text_lying_content_type_is_422_at_once(api, instance):
    """The issue's example: the SSE form used to send nothing at all (100 s and counting)."""
    response = api.client.post(
        f"/api/instances/{instance.id}/chat",
        '{"text": "hola \\ud83d"}',
        content_type="application/octet-stream",
        headers={**api._headers(), "Accept": "text/event-stream"},
    )
    _assert_refused(response, 422, "validation_error", "text")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e999", "out of range"),
        ("1" * 5000, "numbers may have at most 100"),
        ("0." + "1" * 5000, "numbers may have at most 100"),
    ],
    ids=["nan", "infinity", "minus-infinity", "overflow", "5000-digit-int", "5000-digit-float"],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_nan_infinity_and_huge_numbers_are_a_clear_400(
    api, character, instance, literal, reason, content_type
):
    writes = [
        ("patch", f"/api/characters/{character.id}", f'{{"temperature": {literal}}}'),
        ("patch", f"/api/characters/{character.id}", f'{{"max_tokens": {literal}}}'),
        ("put", f"/api/instances/{instance.id}/memory", f'{{"text": "x", "n": {literal}}}'),
        ("post", f"/api/instances/{instance.id}/chat", f'{{"text": "hi", "x": [{literal}]}}'),
        ("post", "/api/tts", f'{{"text": "hi", "speed": {literal}}}'),
    ]
    for method, path, payload in writes:
        code = "number_too_long" if "at most 100" in reason else "bad_request"
        body = _assert_refused(send(api, method, path, payload, content_type), 400, code)
        assert reason in body["detail"], body
    character.refresh_from_db()
    assert character.temperature is None  # Unchanged.
    assert not Message.objects.exists()


def test_malformed_json_says_where(api, character):
    response = api.patch(f"/api/characters/{character.id}", '{"greeting": "hi",}')
    body = _assert_refused(response, 400, "bad_request")
    assert "line 1, column" in body["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_a_json_body_larger_than_any_field_takes_is_413_before_it_is_parsed(
    api, character, instance, content_type
):
    """HTTP_MAX_BODY_BYTES (10 MB, for audio) let an 8 MB JSON body cost up to 17 s of CPU
    and hold the event loop for a second; no field takes more than a few text limits."""
    from realtime.json_body import json_body_limit

    limit = json_body_limit()
    assert limit == 1024 * 1024  # The defaults' texts are far smaller.
    body = '{"description": "' + "a" * limit + '"}'
    for method, path in (
        ("post", "/api/characters"),
        ("patch", f"/api/characters/{character.id}"),
        ("put", f"/api/instances/{instance.id}/memory"),
        ("post", f"/api/instances/{instance.id}/chat"),
        ("post", "/api/tts"),
    ):
        response = getattr(api.client, method)(
            path, data=body, content_type=content_type, headers=api._headers()
        )
        assert response.status_code == 413, (path, response.content[:200])
        assert response.json()["code"] == "too_large"
        assert str(limit) in response.json()["detail"]
    at_limit = '{"text": "' + "a" * (limit - 20) + '"}'
    response = api.client.put(
        f"/api/instances/{instance.id}/memory",
        data=at_limit,
        content_type=content_type,
        headers=api._headers(),
    )
    assert response.status_code == 422  # Parsed: then MEMORY_MAX_CHARS refuses the text.


def test_a_stored_infinity_is_answered_as_valid_json(api, character):
    """Nothing we answer is invalid JSON: a value that is not finite (stored by hand, say) is
    null, never the `Infinity` literal a browser's JSON.parse refuses."""
    Character.objects.filter(pk=character.pk).update(temperature=math.inf)
    response = api.get(f"/api/characters/{character.id}")
    assert response.status_code == 200
    body = strict(response.content)
    assert body["temperature"] is None
    assert body["name"] == character.name


def test_strict_json_refuses_what_json_module_accepts():
    for text in ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "9" * 4301]:
        with pytest.raises(strict_json.JsonInputError):
            strict_json.loads(text)
    with pytest.raises(strict_json.JsonInputError, match="nests deeper"):
        strict_json.loads("[" * 40 + "]" * 40)
    assert strict_json.loads('{"n": 12345678901234567890, "f": 0.5}') == {
        "n": 12345678901234567890,
        "f": 0.5,
    }
    written = strict_json.dumps({"a": math.nan, "b": [math.inf, 1.5], "c": (-math.inf,)})
    assert strict(written) == {"a": None, "b": [None, 1.5], "c": [None]}


# SSE: the stream always ends with `done` or `error` -----------------------------------------


def parse_sse(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], strict(lines["data"])))
    return events


async def _stream(token: str, instance, text: str = "Hi") -> list[tuple[str, dict]]:
    response = await AsyncClient().post(
        f"/api/instances/{instance.id}/chat",
        {"text": text},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    chunks = [chunk async for chunk in response.streaming_content]
    return parse_sse(b"".join(chunks).decode())


@pytest.mark.django_db(transaction=True)
async def test_sse_ends_with_error_when_the_model_fails(fake_openai, token, instance):
    fake_openai.fail(500, times=5, message="The model is down.")
    events = await _stream(token, instance)
    assert [name for name, _ in events][-1] == "error"
    assert events[-1][1]["code"].startswith("llm")


@pytest.mark.django_db(transaction=True)
async def test_sse_ends_with_error_on_an_unexpected_exception_mid_stream(
    fake_openai, token, instance, monkeypatch
):
    fake_openai.script(Reply("One two three."))

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Message.objects, "aget", broken)  # The last read, after the deltas.
    events = await _stream(token, instance)
    names = [name for name, _ in events]
    assert names[0] == "start" and "delta" in names
    assert names[-1] == "error"
    assert events[-1][1]["code"] == "internal_error"
    assert "boom" not in json.dumps(events)


@pytest.mark.django_db(transaction=True)
async def test_sse_answers_even_when_the_turn_fails_before_the_first_byte(
    fake_openai, token, instance, monkeypatch
):
    from conversation import turns

    def broken():
        raise RuntimeError("no engine")

    monkeypatch.setattr(turns, "get_engine", broken)
    events = await _stream(token, instance)
    assert [(name, data["code"]) for name, data in events] == [("error", "internal_error")]


@pytest.mark.django_db(transaction=True)
async def test_sse_delta_with_a_lone_surrogate_from_the_model_is_valid_json(
    fake_openai, token, instance
):
    """A model (or proxy) can send `"\\ud83d"` escapes: the stream stays valid JSON and UTF-8."""
    fake_openai.script(Reply("Hi \ud83d there."))
    events = await _stream(token, instance)
    assert events[-1][0] in {"done", "error"}
    assert "".join(data["delta"] for name, data in events if name == "delta").startswith("Hi ")
    stored = await sync_to_async(list)(Message.objects.filter(role="user"))
    assert [m.text for m in stored] == ["Hi"]


# The admin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voices", "temperature"),
    [
        ('{"espeak": ' + "1" * 5000 + "}", "0.5"),
        ('{"espeak": NaN}', "0.5"),
        ('{"espeak": "es"' + ", " + '"x": [' * 40 + "]" * 40 + "}", "0.5"),
        ("{}", "nan"),
        ("{}", "inf"),
        ("{}", "1" * 5000),
    ],
    ids=["5000-digits", "nan", "deep", "temperature-nan", "temperature-inf", "temperature-huge"],
)
def test_admin_refuses_nan_and_huge_numbers_with_a_form_error(
    client, staff_user, character, voices, temperature
):
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
            "voices": voices,
            "model_name": "",
            "temperature": temperature,
            "instances-TOTAL_FORMS": "0",
            "instances-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # The form again, with the error; not a 500.
    assert "errornote" in response.content.decode()
    character.refresh_from_db()
    assert character.voices == {"edge": "es-ES-ElviraNeural"}
    assert character.temperature is None


def test_a_json_body_over_the_body_limit_is_413(api, instance, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.put(f"/api/instances/{instance.id}/memory", {"text": "x" * 2000})
    _assert_refused(response, 413, "too_large")
    instance.refresh_from_db()
    assert instance.memory == "Vive en Madrid."


def test_unstorable_text_is_found_past_many_numbers_and_nested_lists():
    """find_unsafe walks only what can hold text (a path per number cost 1.1 s for 500,000
    numbers, now 0.3 s); a bad string anywhere is still found, with its path."""
    from realtime.text_safety import find_unsafe

    value = {"a": [[1.5] * 1000, [True, None, 3], [["ok", {"k": ["x", "bad\x00"]}]]]}
    assert find_unsafe(value) == ("a.2.0.1.k.1", "Text must not contain NUL (\\u0000) characters.")
    assert find_unsafe({"a": [[1] * 1000, ["\ud83d"]]})[0] == "a.1.0"
    assert find_unsafe({"a": list(range(1000))}) is None


def test_nesting_is_measured_outside_strings_with_escaped_quotes():
    from realtime.text_safety import json_depth

    assert json_depth(b'{"a": "[[[{{{"}') == 1
    assert json_depth(b'{"a": "\\"[[[", "b": [[1]]}') == 3
    assert json_depth(b'["\\\\", [[1]], "]]]"]') == 3
    assert json_depth(b"[" * 40 + b"]" * 40) == 40
    assert json_depth(b'{"t": "' + b"a" * 100_000 + b'"}') == 1
