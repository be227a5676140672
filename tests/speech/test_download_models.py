"""`download_models`: checksums, unzip and clear offline failures, against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audio_pipeline.models_download import (
    ModelDownloadError,
    ModelSpec,
    download_model,
    installed_model_dir,
)

from .conftest import closed_port

NAME = "vosk-model-small-xx-0.1"


@pytest.fixture
def served(tmp_path: Path):
    """A directory served on 127.0.0.1 holding a small model zip; yields (base_url, spec, root)."""
    root = tmp_path / "www"
    root.mkdir()
    archive = root / f"{NAME}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"{NAME}/am/final.mdl", b"acoustic model bytes")
        zipped.writestr(f"{NAME}/conf/model.conf", "--endpoint.rule2.min-trailing-silence=0.5\n")
    data = archive.read_bytes()
    spec = ModelSpec(NAME, len(data), hashlib.sha256(data).hexdigest())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spec, root
    server.shutdown()


def test_download_verifies_and_unzips(served, tmp_path):
    base, spec, _ = served
    path = download_model("xx", base_url=base, dest=tmp_path / "models", spec=spec)
    assert path == tmp_path / "models" / NAME
    assert (path / "am" / "final.mdl").read_bytes() == b"acoustic model bytes"
    assert (
        download_model("xx", base_url="http://127.0.0.1:1", dest=tmp_path / "models", spec=spec)
        == path
    )
    assert [p.name for p in (tmp_path / "models").iterdir()] == [NAME], "no temp files left"


def test_checksum_and_size_mismatches_are_refused(served, tmp_path):
    base, spec, _ = served
    bad_sum = ModelSpec(NAME, spec.size, "0" * 64)
    with pytest.raises(ModelDownloadError, match="SHA-256"):
        download_model("xx", base_url=base, dest=tmp_path / "m", spec=bad_sum)
    with pytest.raises(ModelDownloadError, match="bytes, expected"):
        download_model("xx", base_url=base, dest=tmp_path / "m", spec=ModelSpec(NAME, 5, None))
    assert not (tmp_path / "m" / NAME).exists()


def test_zip_without_the_model_or_with_unsafe_paths_is_refused(served, tmp_path):
    base, _, root = served
    for members in ({"other/am/x": b"1"}, {"../evil": b"1", f"{NAME}/am/x": b"1"}):
        archive = root / f"{NAME}.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            for member, data in members.items():
                zipped.writestr(member, data)
        spec = ModelSpec(NAME, archive.stat().st_size, None)
        with pytest.raises(ModelDownloadError, match=r"no model directory|Unsafe path"):
            download_model("xx", base_url=base, dest=tmp_path / "m", spec=spec)
    assert not (tmp_path / "evil").exists()


def test_offline_fails_clearly(tmp_path):
    with pytest.raises(ModelDownloadError, match="Are you offline"):
        download_model("es", base_url=f"http://127.0.0.1:{closed_port()}", dest=tmp_path, timeout=2)


def test_command_fails_clearly_offline_and_for_unknown_languages(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    settings.VOSK_MODELS_URL = f"http://127.0.0.1:{closed_port()}/vosk/models"
    with pytest.raises(CommandError, match=r"Cannot download .*vosk-model-small-es-0\.42\.zip"):
        call_command("download_models", "es", "--timeout", "2")
    with pytest.raises(CommandError, match="No known Vosk model"):
        call_command("download_models", "zz")


def test_installed_model_is_found_for_its_language(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    assert installed_model_dir("es") is None
    (tmp_path / "vosk-model-small-es-0.42" / "am").mkdir(parents=True)
    assert installed_model_dir("es") == tmp_path / "vosk-model-small-es-0.42"
    from audio_pipeline.stt.selection import vosk_model_path

    settings.VOSK_MODELS, settings.VOSK_MODEL_PATH = {}, ""
    assert vosk_model_path("es-MX") == tmp_path / "vosk-model-small-es-0.42"
