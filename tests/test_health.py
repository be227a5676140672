"""Liveness and readiness probes, with the in-memory layer and with real Redis."""

from __future__ import annotations

import os

import pytest
from django.test import AsyncClient

from realtime import readiness

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_healthz_needs_no_auth_or_database():
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
async def test_readyz_reports_database_and_channel_layer():
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["backend"] == "InMemoryChannelLayer"


@pytest.mark.django_db
@pytest.mark.redis
async def test_readyz_over_real_redis(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    response = await AsyncClient().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["channel_layer"] == body["checks"]["channel_layer"] | {
        "ok": True,
        "backend": "RedisChannelLayer",
    }


@pytest.mark.django_db
async def test_readyz_is_503_when_redis_is_unreachable(settings, unused_tcp_port):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
async def test_readyz_shows_registered_details_and_survives_broken_ones():
    readiness.register("test-ok", lambda: {"engine": "demo"})
    readiness.register("test-broken", lambda: 1 / 0)
    try:
        body = (await AsyncClient().get("/readyz")).json()
    finally:
        readiness._providers.pop("test-ok")
        readiness._providers.pop("test-broken")
    assert body["details"]["test-ok"] == {"engine": "demo"}
    assert "ZeroDivisionError" in body["details"]["test-broken"]["error"]


async def _call(app, method: str, path: str) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"host", b"10.0.0.7:8000")],  # a probe's Host: the pod IP
        "query_string": b"",
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.7", 8000),
    }
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_healthz_is_answered_before_django_on_the_event_loop():
    """No thread hop and no Host check: under load Django's sync signal receivers alone took
    seconds (operations.md); a liveness probe must measure the loop, not the thread pool."""
    import json

    from realtime.asgi import application

    status, headers, body = await _call(application, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers[b"cache-control"] == b"no-store"
    status, _, body = await _call(application, "HEAD", "/healthz")
    assert (status, body) == (200, b"")
    status, headers, _ = await _call(application, "POST", "/healthz")
    assert status == 405 and headers[b"allow"] == b"GET, HEAD"
