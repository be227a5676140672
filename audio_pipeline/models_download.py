"""Fetch the Vosk project's small models into VOZ_DATA_DIR/models, checking size and SHA-256.

Nothing downloads at run time: `python manage.py download_models es en` is the only way in.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class ModelSpec:
    name: str  # also the zip's top-level directory
    size: int  # bytes of the zip
    sha256: str | None  # None: not pinned yet; the download prints the digest it got


# Sizes from the Vosk model list. The Spanish digest comes from a published pin of the same
# file (size 39,817,833); the English one could not be checked offline, so it is not pinned.
CATALOG: dict[str, ModelSpec] = {
    "es": ModelSpec(
        "vosk-model-small-es-0.42",
        39_817_833,
        "09b239888f633ef2f0b4e09736e3d9936acfd810bc65d53fad45261762c6511f",
    ),
    "en": ModelSpec("vosk-model-small-en-us-0.15", 41_205_931, None),
}


class ModelDownloadError(RuntimeError):
    pass


def is_vosk_model(path: Path) -> bool:
    return path.is_dir() and ((path / "am").is_dir() or (path / "conf").is_dir())


def installed_model_dir(language: str) -> Path | None:
    spec = CATALOG.get(language)
    if spec is None:
        return None
    path = Path(settings.MODELS_DIR) / spec.name
    return path if is_vosk_model(path) else None


def download_model(
    language: str,
    *,
    base_url: str | None = None,
    dest: Path | None = None,
    spec: ModelSpec | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download, verify and unzip the model for `language`; returns its directory."""
    spec = spec or CATALOG.get(language)
    if spec is None:
        raise ModelDownloadError(f"No known Vosk model for '{language}'; known: {sorted(CATALOG)}.")
    dest = Path(dest or settings.MODELS_DIR)
    target = dest / spec.name
    if is_vosk_model(target):
        return target
    url = f"{(base_url or settings.VOSK_MODELS_URL).rstrip('/')}/{spec.name}.zip"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = Path(tmp) / f"{spec.name}.zip"
        digest, size = _fetch(url, archive, timeout)
        if size != spec.size:
            raise ModelDownloadError(f"{url}: got {size} bytes, expected {spec.size}.")
        if spec.sha256 and digest != spec.sha256:
            raise ModelDownloadError(f"{url}: SHA-256 {digest} does not match {spec.sha256}.")
        _unzip(archive, Path(tmp) / "unpacked")
        unpacked = Path(tmp) / "unpacked" / spec.name
        if not is_vosk_model(unpacked):
            raise ModelDownloadError(f"{url}: the archive has no model directory {spec.name}/.")
        shutil.move(str(unpacked), target)
    return target


def _fetch(url: str, archive: Path, timeout: float) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, archive.open("wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                size += len(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelDownloadError(
            f"Cannot download {url}: {reason}. Are you offline? Download the zip elsewhere, "
            f"unzip it and set VOSK_MODEL_PATH (or VOSK_MODEL_<LANG>) to its directory."
        ) from exc
    return digest.hexdigest(), size


def _unzip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                resolved = (into / member).resolve()
                if not resolved.is_relative_to(into.resolve()):
                    raise ModelDownloadError(f"Unsafe path in the archive: {member}")
            zipped.extractall(into)
    except zipfile.BadZipFile as exc:
        raise ModelDownloadError(f"{archive.name} is not a valid zip: {exc}") from exc
