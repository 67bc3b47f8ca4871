"""The dense half of the index: chunk vectors in a Chroma collection inside the index folder.

Chroma only stores and searches here; the embedder is RepoTune's (llm/embeddings.py). SQLite in
store.py stays the record of which chunks exist; these vectors may lag behind or hold stale ids.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.index.folder import CHROMA_DIR, make_private, owns

COLLECTION = "chunks"
# Chroma's calls take at most this many ids at once.
ID_PAGE = 5000


class VectorStoreError(RuntimeError):
    """The vector folder cannot be rebuilt (not a RepoTune index folder)."""


class Vectors:
    """One Chroma collection, opened on first use; every call holds one lock (Chroma's client
    is shared by the index's threads)."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self._lock = threading.Lock()
        self._collection: Any = None
        self._client: Any = None

    def collection(self) -> Any:
        """The Chroma collection, created on first use (it never embeds anything itself)."""
        with self._lock:
            if self._collection is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                self._client = chromadb.PersistentClient(
                    path=str(self.location / CHROMA_DIR),
                    settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True),
                )
                self._collection = self._new_collection()
                make_private(self.location / CHROMA_DIR)
            return self._collection

    def _new_collection(self) -> Any:
        return self._client.get_or_create_collection(
            COLLECTION, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )

    def clear(self) -> None:
        """An empty collection in place of the current one."""
        self.collection()
        with self._lock:
            self._client.delete_collection(COLLECTION)
            self._collection = self._new_collection()

    def reset(self) -> None:
        """Drop the Chroma folder (the store's own, in a folder RepoTune owns)."""
        import chromadb

        with self._lock:
            self._collection = None
            self._client = None
            # Chroma keeps one system per path for the whole process; a new client would
            # otherwise get the damaged one back.
            shared = getattr(chromadb.api.client, "SharedSystemClient", None)
            if shared is not None and hasattr(shared, "clear_system_cache"):
                shared.clear_system_cache()
            if not owns(self.location):
                raise VectorStoreError(f"{self.location} is not a RepoTune index folder")
            path = self.location / CHROMA_DIR
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)

    def close(self) -> None:
        with self._lock:
            self._collection = None
            self._client = None

    def ids(self) -> set[str]:
        collection = self.collection()
        found: set[str] = set()
        with self._lock:
            offset = 0
            while True:
                page = collection.get(include=[], limit=ID_PAGE, offset=offset)["ids"]
                found.update(page)
                if len(page) < ID_PAGE:
                    return found
                offset += len(page)

    def pages(self, size: int = ID_PAGE) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every stored (ids, vectors), a page at a time (to upload them to a shared index)."""
        collection = self.collection()
        offset = 0
        while True:
            with self._lock:
                page = collection.get(include=["embeddings"], limit=size, offset=offset)
            ids = list(page["ids"])
            if ids:
                yield ids, np.asarray(page["embeddings"], dtype=np.float32)
            if len(ids) < size:
                return
            offset += len(ids)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        collection = self.collection()
        with self._lock:
            collection.upsert(ids=list(ids), embeddings=vectors)
        make_private(self.location / CHROMA_DIR)  # new segment files come with the umask

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self.collection()
        with self._lock:
            for start in range(0, len(ids), ID_PAGE):
                collection.delete(ids=list(ids[start : start + ID_PAGE]))

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest chunk ids by cosine distance."""
        collection = self.collection()
        with self._lock:
            # Chroma returns what it has when asked for more (no count() round trip per query)
            result = collection.query(query_embeddings=[vector], n_results=n, include=["distances"])
        if not result["ids"]:
            return []
        ids = result["ids"][0]
        distances = result["distances"][0] if result.get("distances") else [0.0] * len(ids)
        return list(zip(ids, (float(d) for d in distances), strict=True))
