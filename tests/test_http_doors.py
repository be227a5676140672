"""HTTP doors refuse oversized input with clear 4xx answers, never 500 (issue 21 item 11, HTTP):
numbers Python cannot read, too many form fields or files, methods (HEAD, 405) and a
character's reply limit against its model's context."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from characters.models import Character

pytestmark = pytest.mark.django_db

DIGITS = "9" * 5000


def character_form(character, **fields) -> dict:
    """The admin's change form for `character`, with no instances inline."""
    return {
        "owner": character.owner_id,
        "name": character.name,
        "description": character.description,
        "language": character.language,
        "voices": "{}",
        "instances-TOTAL_FORMS": "0",
        "instances-INITIAL_FORMS": "0",
        **fields,
    }


@pytest.fixture
def admin_client_(django_user_model) -> Client:
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    client.force_login(admin)
    return client


def test_a_json_number_of_thousands_of_digits_is_400_naming_the_limit(api, character, instance):
    doors = [
        ("post", "/api/characters", f'{{"name": "N", "description": "d", "max_tokens": {DIGITS}}}'),
        ("patch", f"/api/characters/{character.id}", f'{{"max_tokens": -{DIGITS}}}'),
        ("post", f"/api/instances/{instance.id}/chat", f'{{"text": "hi", "x": {DIGITS}}}'),
        ("put", f"/api/instances/{instance.id}/memory", f'{{"memory": "m", "n": [{DIGITS}]}}'),
    ]
    for method, path, body in doors:
        response = getattr(api, method)(path, body)
        assert response.status_code == 400, (path, response.content)
        answer = response.json()
        assert answer["code"] == "number_too_long" and "at most 100" in answer["detail"]
    # Digits in a string are text; a float literal of many digits is refused the same way.
    response = api.patch(f"/api/characters/{character.id}", {"description": DIGITS})
    assert response.status_code == 200
    response = api.patch(f"/api/characters/{character.id}", f'{{"temperature": 9.{DIGITS}}}')
    assert response.status_code == 400 and response.json()["code"] == "number_too_long"
    response = api.patch(f"/api/characters/{character.id}", '{"temperature": 9.5}')
    assert response.status_code == 422  # A valid number out of range names the field.
    assert response.json()["errors"][0]["field"] == "temperature"


def test_thousands_of_digits_in_query_path_and_admin_are_4xx(api, admin_client_, character):
    assert api.get(f"/api/characters?offset={DIGITS}").status_code == 422
    assert api.get(f"/api/characters/{DIGITS}").status_code == 422
    for page in (
        f"/admin/characters/character/?p={DIGITS}",
        f"/admin/characters/character/?o={DIGITS}",
        f"/admin/characters/character/{DIGITS}/change/",
        f"/admin/characters/characterinstance/?character__id__exact={DIGITS}",
    ):
        assert admin_client_.get(page).status_code < 500, page
    change = f"/admin/characters/character/{character.pk}/change/"
    response = admin_client_.post(change, character_form(character, max_tokens=DIGITS))
    assert response.status_code == 200 and b"max_tokens" in response.content  # the form again


def test_too_many_form_fields_or_files_is_a_json_400_on_the_api(api, settings):
    headers = {"Authorization": f"Bearer {api.token}"}
    fields = {f"f{i}": "x" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    files = {f"f{i}": io.BytesIO(b"x") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)}
    for body, what in ((fields, "1000 form fields"), (files, "100 files")):
        response = api.client.post("/api/stt", body, headers=headers)
        assert response.status_code == 400, response.content
        answer = response.json()
        assert answer["code"] == "too_many_parts" and what in answer["detail"]
    # Other API routes read such a body as JSON: a 400 too, never a 500.
    assert api.client.post("/api/characters", fields, headers=headers).status_code == 400


def test_too_many_form_fields_in_the_admin_and_pages_is_djangos_400(admin_client_):
    fields = {f"f{i}": "x" for i in range(1001)}
    assert admin_client_.post("/admin/characters/character/add/", fields).status_code == 400
    assert Client().post("/accounts/login/", fields).status_code == 400
    assert Client().post("/language/", fields).status_code == 400


def test_405_is_json_with_allow_on_every_door(api, admin_client_, instance):
    doors = [
        (api.client.post, "/api/voices", "GET, HEAD"),
        (api.client.delete, f"/api/instances/{instance.id}/chat", "POST"),
        (api.client.put, f"/api/instances/{instance.id}", "GET, HEAD, PATCH, DELETE"),
        (Client().post, "/readyz", "GET, HEAD"),
        (Client().delete, "/healthz", "GET, HEAD"),
        (admin_client_.get, "/admin/logout/", "POST, OPTIONS"),
    ]
    for send, path, allow in doors:
        response = send(path, headers={"Authorization": f"Bearer {api.token}"})
        assert response.status_code == 405, path
        assert response["Content-Type"] == "application/json", path
        assert set(response["Allow"].split(", ")) == set(allow.split(", ")), path
        answer = response.json()
        assert answer["code"] == "method_not_allowed" and path in answer["detail"]


def test_head_is_answered_wherever_get_is(api, user, admin_client_, character):
    headers = {"Authorization": f"Bearer {api.token}"}
    page = Client()
    page.force_login(user)
    for client, path in (
        (api.client, "/api/voices"),
        (api.client, "/api/characters"),
        (api.client, f"/api/characters/{character.id}"),
        (api.client, "/api/openapi.json"),
        (Client(), "/healthz"),
        (Client(), "/readyz"),
        (page, "/"),
        (admin_client_, "/admin/"),
        (admin_client_, "/admin/characters/character/"),
    ):
        got = client.get(path, headers=headers)
        head = client.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        assert head["Content-Type"] == got["Content-Type"], path
        assert int(head["Content-Length"]) == len(got.content), path
    # HEAD asks like GET: no token, no answer.
    assert Client().head("/api/characters").status_code == 401


def test_max_tokens_at_or_over_the_models_context_is_refused_naming_the_limit(
    api, admin_client_, character, settings
):
    settings.LLM_ENGINE = "local"
    settings.LOCAL_CONTEXT_TOKENS = 2048
    response = api.patch(f"/api/characters/{character.id}", {"max_tokens": 2048})
    assert response.status_code == 422, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "max_tokens"
    assert "At most 1024 for the local model" in error["message"]
    assert "2048-token context" in error["message"]
    assert api.patch(f"/api/characters/{character.id}", {"max_tokens": 1024}).status_code == 200

    settings.LLM_ENGINE = "openai"
    settings.OPENAI_MODEL = "gpt-4"
    new = {"name": "N", "description": "d", "max_tokens": 8192}
    response = api.post("/api/characters", new)
    assert response.status_code == 422
    assert "At most 4096 for gpt-4" in response.json()["detail"]
    response = api.post("/api/characters", new | {"model_name": "gpt-4o"})
    assert response.status_code == 201, response.content  # 128k context

    change = f"/admin/characters/character/{character.pk}/change/"
    form = character_form(character, max_tokens=5000)
    response = admin_client_.post(change, form)
    assert response.status_code == 200 and b"At most 4096 for gpt-4" in response.content
    character.refresh_from_db()
    assert character.max_tokens == 1024
    settings.LLM_CONTEXT_TOKENS = 16384  # the documented override
    response = admin_client_.post(change, form)
    assert response.status_code == 302, response.content[:3000]
    assert Character.objects.get(pk=character.pk).max_tokens == 5000


def test_query_secrets_are_redacted_by_their_decoded_name():
    from realtime.access_log import redact

    line = "GET /x?%74oken=a&TOKEN=b&access-token=c&%2574oken=d&X-Api-Key=e&q=voz%5Fabc&monkey=1"
    assert redact(line) == (
        "GET /x?%74oken=[redacted]&TOKEN=[redacted]&access-token=[redacted]"
        "&%2574oken=[redacted]&X-Api-Key=[redacted]&q=[redacted]&monkey=1"
    )


def test_a_method_no_route_takes_is_a_json_405_before_csrf_on_every_kind_of_route(
    api, user, admin_client_, instance
):
    """Red team D: TRACE on the docs and the schema answered 200; PUT and DELETE on them and on
    the pages answered the HTML CSRF 403, because the CSRF check ran before the 405."""
    page = Client(enforce_csrf_checks=True)
    page.force_login(user)
    admin = Client(enforce_csrf_checks=True)
    admin.cookies = admin_client_.cookies  # the superuser's session
    headers = {"Authorization": f"Bearer {api.token}"}
    doors = [
        (api.client, "/api/voices", "GET, HEAD"),
        (api.client, f"/api/instances/{instance.id}", "GET, HEAD, PATCH, DELETE"),
        (Client(enforce_csrf_checks=True), "/api/docs", "GET, HEAD"),
        (Client(enforce_csrf_checks=True), "/api/openapi.json", "GET, HEAD"),
        (page, "/", "GET, HEAD"),
        (Client(enforce_csrf_checks=True), "/accounts/login/", "GET, HEAD, POST, OPTIONS"),
        (admin, "/admin/", "GET, HEAD, POST"),
        (admin, "/admin/characters/character/", "GET, HEAD, POST"),
        (Client(enforce_csrf_checks=True), "/healthz", "GET, HEAD"),
        (Client(enforce_csrf_checks=True), "/readyz", "GET, HEAD"),
    ]
    for client, path, allow in doors:
        for method in ("TRACE", "PUT", "DELETE", "FOO"):
            if method in allow.split(", "):
                continue
            response = client.generic(method, path, headers=headers)
            assert response.status_code == 405, (method, path, response.status_code)
            assert response["Content-Type"] == "application/json", (method, path)
            assert set(response["Allow"].split(", ")) == set(allow.split(", ")), (method, path)
            assert response.json()["code"] == "method_not_allowed", (method, path)
    # A method the route does take still meets CSRF: a form POST without its token is a 403.
    assert Client(enforce_csrf_checks=True).post("/accounts/login/", {}).status_code == 403
    assert admin.post("/admin/characters/character/", {}).status_code == 403
    # And the API's JSON 404 stays a 404 whatever the method.
    assert api.client.generic("TRACE", "/api/no-such-route", headers=headers).status_code == 404
