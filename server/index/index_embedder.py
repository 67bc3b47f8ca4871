"""`IndexEmbedder`: the embedder of one workspace index.

Resolved when the index opens (the model file's name and checksum identify its vectors), loaded
on first use (or shared between the workspaces of one server), and asked for queries through a
small cache that never waits long behind a batch the dense filler is embedding.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.config import ModelSettings
from repotune.server.llm.embeddings import QueryFirstLock, SharedEmbedders, load_embedder
from repotune.server.models import resolve_embedder, sha256_file

# A query waits at most this long for the embedder (busy with a batch) before going lexical-only.
QUERY_EMBED_WAIT_S = 0.3
QUERY_CACHE_SIZE = 256


class IndexEmbedder:
    def __init__(
        self,
        settings: ModelSettings,
        embedder: Any = None,
        shared: SharedEmbedders | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        """`embedder`: one already loaded (tests, benchmarks); `shared`: the server's embedders,
        one per model file; `enabled`: False for a lexical-only index (nothing is resolved)."""
        self._settings = settings
        self.model: Any = embedder
        self._shared = shared
        self._own_model = False
        self.error: str | None = None  # why there are no vectors, when there are none
        self.sha256: str | None = None
        self.lock = (
            shared.lock_for(settings.embedder, settings.threads)
            if shared is not None and embedder is None
            else QueryFirstLock()
        )
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.id = self._identify() if enabled else None

    def _identify(self) -> str | None:
        """The model file's name (the store keeps vectors per embedder), its checksum kept."""
        if self.model is not None:
            path = Path(getattr(self.model, "model_path", "injected"))
            if path.is_file():
                self.sha256 = sha256_file(path)
            return path.name
        try:
            resolved = resolve_embedder(self._settings.embedder)
        except Exception as exc:  # resolution failure: lexical-only, with the reason kept
            self.error = str(exc)
            return None
        self.sha256 = resolved.sha256
        return resolved.path.name

    @property
    def dimension(self) -> int | None:
        return getattr(self.model, "dimension", None)

    def get(self) -> Any:
        """The loaded embedder, loading it now if need be (call under `lock`)."""
        if self.model is None:
            settings = self._settings
            if self._shared is not None:
                self.model = self._shared.get(
                    settings.embedder, settings.threads, settings.gpu_layers
                )
            else:
                self.model = load_embedder(settings.embedder, settings.threads, settings.gpu_layers)
                self._own_model = True
        return self.model

    def embed_query(self, text: str) -> np.ndarray | None:
        """The query's vector; None before the embedder is loaded, or when a batch holds it
        longer than a query may wait."""
        if self.model is None or self.error is not None:
            return None
        with self._cache_lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        with self.lock.for_query(QUERY_EMBED_WAIT_S) as acquired:
            if not acquired:
                return None
            vector = self.model.embed_query(text)
        with self._cache_lock:
            self._query_cache[text] = vector
            while len(self._query_cache) > QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return vector

    def close(self) -> None:
        """Free the model if this index loaded it (a shared or injected one stays)."""
        if self._own_model and self.model is not None:
            with contextlib.suppress(Exception):
                self.model.close()
