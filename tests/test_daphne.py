"""The real server: migrate, seed and serve with daphne, then talk to it over HTTP."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.servers import prepare_database, server_env, start_daphne


def get(url: str, token: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = server_env(tmp_path_factory.mktemp("served"))
    credentials = prepare_database(env)
    daphne = start_daphne(env)
    try:
        yield daphne.http, credentials
    finally:
        daphne.stop()


def test_served_api_lists_demo_characters(server):
    base, credentials = server
    status, body, _ = get(f"{base}/api/characters", credentials["token"])
    assert status == 200
    names = {item["name"] for item in json.loads(body)["items"]}
    assert names == {"Doña Rosa", "Captain Nova"}


def test_served_api_refuses_without_token(server):
    base, _ = server
    status, body, _ = get(f"{base}/api/characters")
    assert status == 401
    assert json.loads(body)["code"] == "unauthorized"


def test_served_probes_and_static_files(server):
    base, _ = server
    assert get(f"{base}/healthz")[0] == 200
    status, body, _ = get(f"{base}/readyz")
    assert status == 200
    assert json.loads(body)["checks"]["database"]["ok"] is True
    status, body, _ = get(f"{base}/static/frontend/voz.css")
    assert status == 200
    assert b"font-family" in body
    status, body, _ = get(f"{base}/accounts/login/")
    assert status == 200
    assert b"csrfmiddlewaretoken" in body
