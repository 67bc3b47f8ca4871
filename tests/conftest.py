"""Shared fixtures: real models, resolved once per test session from RepoTune's cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repotune.server.models import ResolvedModel, resolve_embedder, resolve_generator


@pytest.fixture(scope="session")
def generator_model() -> ResolvedModel:
    """The real default generator (Gemma 3 270M Q4_K_M), assembled from its PyPI package."""
    return resolve_generator("default")


@pytest.fixture(scope="session")
def embedder_model() -> ResolvedModel:
    """The real default embedder (all-MiniLM-L6-v2 converted to GGUF)."""
    return resolve_embedder("default")


@pytest.fixture(scope="session")
def embedder(embedder_model: ResolvedModel) -> Iterator[object]:
    from repotune.server.embeddings import Embedder

    instance = Embedder(embedder_model.path)
    yield instance
    instance.close()


@pytest.fixture()
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RepoTune cache dir, for tests that must provision from scratch."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPOTUNE_CACHE_DIR", str(cache))
    return cache
