"""Shared fixtures: real models, resolved once per test session from RepoTune's cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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
def models(generator_model: ResolvedModel, embedder_model: ResolvedModel) -> dict[str, str]:
    """The real default models by path, as a client's `model` settings name them."""
    return {"generator": str(generator_model.path), "embedder": str(embedder_model.path)}


@pytest.fixture(scope="session")
def embedder(embedder_model: ResolvedModel) -> Iterator[object]:
    from repotune.server.llm.embeddings import Embedder

    instance = Embedder(embedder_model.path)
    yield instance
    instance.close()


@pytest.fixture()
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RepoTune cache dir, for tests that must provision from scratch."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPOTUNE_CACHE_DIR", str(cache))
    return cache


# A frozen snapshot of some of RepoTune's own modules: a real repository that does not change
# when the server is refactored.
# A small prompt budget and short answers: real-model engine tests stay cheap on two CPU cores.
SMALL_COMPLETION = {
    "context_tokens": 128,
    "prefix_tokens": 256,
    "suffix_tokens": 64,
    "max_tokens_line": 16,
    "max_tokens_block": 32,
    # Tests of other mechanics must not depend on the host's speed ("auto" would turn quick
    # start on on a slow CI machine); tests/completion/test_quick_start.py covers "auto".
    "quick_start": False,
}

FIXTURE_REPO = Path(__file__).resolve().parent / "fixtures" / "repo"


def copy_fixture_repo(names: Iterable[str], target: Path) -> Path:
    """A small real repository for tests: files of tests/fixtures/repo, copied to `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURE_REPO / name, target / name)
    return target


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at `root` holding `files` (relative path -> text)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def spy_on_completions(monkeypatch: pytest.MonkeyPatch, llama_class: type) -> list[dict]:
    """Record the arguments of every Llama.create_completion call (the real one still runs)."""
    calls: list[dict] = []
    real = llama_class.create_completion

    def recording(self, prompt, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append({"llama": self, "prompt": prompt, **kwargs})
        return real(self, prompt, *args, **kwargs)

    monkeypatch.setattr(llama_class, "create_completion", recording)
    return calls


# Whole-product tests (real editors, the training pipeline) run after the stages' own tests, so a
# broken stage fails fast with its own message (as pygls orders its suite).
END_TO_END_FILES = {"test_training_pipeline.py"}


def _end_to_end(item: pytest.Item) -> bool:
    path = Path(str(item.path))
    return path.parent.name == "e2e" or path.name in END_TO_END_FILES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_end_to_end)  # stable: the order within each group is kept


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass (background threads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """`work()`'s result, failing the test (not hanging it) when it blocks: a read of a FIFO
    with no writer never returns. Work that holds the GIL (a regular expression backtracking)
    keeps this thread from waking: then only pytest-timeout ends the run, a failure all the same."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def unblock(fifo: Path) -> None:
    """Lets a reader still blocked on `fifo` (the code before the fix) finish."""
    with contextlib.suppress(OSError):  # no reader left
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
