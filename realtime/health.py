"""Liveness and readiness probes, without auth."""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from realtime import readiness


@csrf_exempt  # They take no input: any other method gets 405, not a CSRF 403.
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving."""
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """Database and channel layer reachable (plus any engine details registered by other apps)."""
    checks = {
        "database": await _timed(sync_to_async(_check_database)),
        "channel_layer": await _timed(_check_channel_layer),
    }
    details = await sync_to_async(readiness.collect)()
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks, "details": details},
        status=200 if ready else 503,
    )


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


async def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer configured.")
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("Channel layer returned an unexpected message.")
    return type(layer).__name__


async def _timed(check, limit_s: float = 3.0) -> dict:
    started = time.perf_counter()
    try:
        backend = await asyncio.wait_for(check(), limit_s)
        result = {"ok": True, "backend": backend}
    except Exception as exc:  # A probe reports failures, it never raises them.
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result
