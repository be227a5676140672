"""What a server loads before it listens (realtime/warm_up.py), each case in a fresh interpreter
(what is imported is the point, and this test process has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import ROOT, server_env, sqlite_file_env

PROBE = """
import json, sys, threading
import django
django.setup()
from django.conf import settings
lazy = ("conversation.engines.openai_engine", "voice.preempt", "audio_pipeline.hearing",
        settings.ROOT_URLCONF, "django.db.models.sql.compiler")
before = [name for name in lazy if name in sys.modules]
from realtime.warm_up import warm_up
took = warm_up()
from realtime.sync_threads import socket_threads, THREAD_PREFIX
def connected():
    from django.db import connection
    return connection.connection is not None
threads = socket_threads()
from audio_pipeline.stt import cache
print(json.dumps({
    "models": cache.stats(),
    "before": before,
    "after": [name for name in lazy if name in sys.modules],
    "parts": sorted(took),
    "socket_threads": sum(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate()),
    "size": threads.size,
    "connected": [e.submit(connected).result() for e in threads._executors],
}))
"""


def probe(env: dict[str, str]) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_first_sessions_find_their_modules_threads_and_connections_ready(tmp_path):
    env = {
        **sqlite_file_env(tmp_path),
        "LLM_ENGINE": "openai",
        "OPENAI_API_KEY": "sk-test",
        "WS_SYNC_THREADS": "3",
        "LOG_LEVEL": "INFO",
    }
    seen, log = probe(env)
    assert seen["before"] == []  # Each of them is loaded lazily otherwise.
    assert len(seen["after"]) == 5, seen
    assert seen["parts"] == sorted(
        [
            "tokens",
            "speech models",
            "espeak",
            "voice models",
            "reply engine",
            "session modules",
            "urls",
            "database",
        ]
    )
    # English voice sessions (LANGUAGE_CODE) find Whisper tiny.en and the Piper workers ready.
    assert seen["models"]["whisper_models"] == 1
    assert seen["models"]["tts_workers"]["piper"]["alive"] == 2
    assert seen["size"] == 3 and seen["socket_threads"] == 3
    assert seen["connected"] == [True, True, True]  # Each socket thread holds its connection.
    assert "failed" not in log


def test_a_part_that_fails_is_logged_and_the_rest_still_load(tmp_path):
    unreachable = "postgres://voz@127.0.0.1:9/voz"  # Port 9 (discard): nothing listens there.
    env = server_env(
        tmp_path,
        DATABASE_URL=unreachable,
        LLM_ENGINE="openai",
        OPENAI_API_KEY="sk-test",
        WS_SYNC_THREADS="2",
    )
    seen, log = probe(env)
    assert "Warm-up of database failed" in log
    assert len(seen["after"]) == 5, seen  # The parts before and after it ran.
    assert seen["socket_threads"] == 2 and seen["connected"] == [False, False]


def test_a_server_can_turn_it_off(tmp_path):
    env = {**sqlite_file_env(tmp_path), "WARM_UP": "false", "LLM_ENGINE": "openai"}
    seen, _ = probe(env)
    assert seen["parts"] == [] and seen["socket_threads"] == 0
    assert seen["models"]["whisper_models"] == 0
    assert "conversation.engines.openai_engine" not in seen["after"]
