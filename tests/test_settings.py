"""Settings read the environment: secret key generation, database and channel layer switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'key': settings.SECRET_KEY, 'db': settings.DATABASES['default']['ENGINE'],"
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'debug': settings.DEBUG}))"
)


def probe(env_file: Path, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DEBUG"}
    }
    clean.update(VOZ_ENV_FILE=str(env_file), DJANGO_SETTINGS_MODULE="realtime.settings", **env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_secret_key_is_generated_into_env_file_once(tmp_path):
    env_file = tmp_path / ".env"
    first = probe(env_file)
    assert len(first["key"]) >= 50
    assert f"SECRET_KEY={first['key']}" in env_file.read_text()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert probe(env_file)["key"] == first["key"]


def test_defaults_are_offline_and_safe(tmp_path):
    values = probe(tmp_path / ".env", SECRET_KEY="k" * 50, VOZ_DATA_DIR=str(tmp_path))
    assert values["db"] == "realtime.sqlite"  # Django's SQLite, writers queued in process
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["debug"] is False


def test_urls_switch_to_postgres_and_redis(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "DATABASE_URL=postgres://u:p@127.0.0.1:5432/voz\nREDIS_URL=redis://127.0.0.1:6379/1\n"
    )
    values = probe(env_file, SECRET_KEY="k" * 50, VOZ_DATA_DIR=str(tmp_path))
    assert values["db"] == "django.db.backends.postgresql"
    assert values["layer"] == "realtime.channel_layer.ResilientRedisChannelLayer"
