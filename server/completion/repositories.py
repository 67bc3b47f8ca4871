"""The engine's repository n-gram tables (repo_ngrams.py) for the loaded model: tokenized on
background threads behind the model lock, started over when another model is loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from repotune.server.completion.generation import loaded_tokenizer
from repotune.server.completion.model import LoadedModel
from repotune.server.completion.repo_ngrams import (
    RepositoryNgrams,
    RepositoryTables,
    RepositoryTexts,
)
from repotune.server.completion.request import CompletionRequest


class ModelRepositories:
    """Each workspace folder's table for whichever model `current` returns."""

    def __init__(
        self, model_lock: threading.Lock, current: Callable[[], LoadedModel | None]
    ) -> None:
        self._model_lock = model_lock  # the llama.cpp context, also what tokenizes
        self._current = current
        self._tables = RepositoryTables()

    def sync(self, source: RepositoryTexts) -> int:
        """Bring the source's table up to date now (the server does it in the background);
        its token count, 0 without a model."""
        loaded = self._current()
        if loaded is None:
            return 0
        return self._tables.sync(source, loaded, self._locked_tokenizer(loaded)).token_count

    def for_request(
        self, loaded: LoadedModel, request: CompletionRequest, weight: float
    ) -> RepositoryNgrams | None:
        """(holding the model lock) The request's repository table as far as it is built (a
        refresh starts when one is due); None at weight 0 or without a repository."""
        if request.repository is None or weight <= 0:
            return None
        return self._tables.table(request.repository, loaded, self._locked_tokenizer(loaded))

    def _locked_tokenizer(self, loaded: LoadedModel) -> Callable[[str], list[int]]:
        """`loaded`'s tokenizer for another thread: it waits for the model lock and fails once
        another model replaced `loaded`."""
        tokenize = loaded_tokenizer(loaded)

        def locked(text: str) -> list[int]:
            with self._model_lock:
                if self._current() is not loaded:
                    raise RuntimeError("the generator was reloaded")
                return tokenize(text)

        return locked

    def stats(self) -> dict[str, Any]:
        return self._tables.stats()

    def close(self) -> None:
        self._tables.close()
