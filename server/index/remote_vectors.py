"""Chunk vectors on a Chroma server (`index.chroma_url`): the team's shared cache of embeddings.

Only chunk ids and vectors go to the server, never code text: a chunk id is a hash of the
chunk's path, kind, names and body (chunking.py), so the vector stored under an id is the same for
anyone who embeds it with the same embedder. One collection per embedder checksum, so vectors of
different embedders never mix. Every request has a timeout (the Chroma client sets none).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from repotune.server.config import IndexSettings

# Chroma takes at most this many ids per request comfortably (a page of vectors is ~1.5 MB).
PAGE = 1000


@dataclass(frozen=True)
class ChromaServer:
    """Where the shared vectors live, and how to reach them."""

    url: str
    tenant: str
    database: str
    token_env: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: IndexSettings) -> ChromaServer | None:
        if not settings.chroma_url:
            return None
        return cls(
            settings.chroma_url,
            settings.chroma_tenant,
            settings.chroma_database,
            settings.chroma_token_env,
            settings.chroma_timeout_s,
        )

    def headers(self) -> dict[str, str]:
        token = os.environ.get(self.token_env, "")
        return {"Authorization": f"Bearer {token}"} if token else {}


def _bounded(call: Callable[[], Any], timeout: float) -> Any:
    """`call()` in a daemon thread, given up on after `timeout` (the Chroma client's constructor
    makes requests before its timeout can be set; a server that hangs there must not hang us)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="repotune-chroma-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer from the Chroma server within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def collection_name(embedder_sha256: str) -> str:
    """The shared collection of one embedder (its file's checksum: the same model, the same
    vectors)."""
    return f"repotune-chunks-{embedder_sha256[:32]}"


class RemoteVectors:
    """One collection on a Chroma server, the `Vectors` interface (without reset: a team's
    collection is never wiped by a client) plus `fetch`. Calls raise on any failure; the caller
    (shared.SharedCache) turns failures into a status and a backoff."""

    def __init__(self, server: ChromaServer, name: str, dimension: int | None = None) -> None:
        self.server = server
        self.name = name
        self.dimension = dimension
        self._lock = threading.Lock()
        self._collection: Any = None

    def collection(self) -> Any:
        with self._lock:
            if self._collection is None:
                self._collection = _bounded(self._connect, 3 * self.server.timeout_s)
            return self._collection

    def _connect(self) -> Any:
        import chromadb
        import httpx
        from chromadb.config import Settings as ChromaSettings

        parts = urlsplit(self.server.url)
        ssl = parts.scheme == "https"
        port = parts.port or (443 if ssl else 80)
        headers = self.server.headers()
        timeout = httpx.Timeout(self.server.timeout_s)
        # A bounded heartbeat first: the Chroma client's own first call has no timeout.
        response = httpx.get(
            f"{self.server.url}/api/v2/heartbeat", headers=headers, timeout=timeout
        )
        response.raise_for_status()
        client = chromadb.HttpClient(
            host=parts.hostname or "",
            port=port,
            ssl=ssl,
            headers=headers,
            tenant=self.server.tenant,
            database=self.server.database,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        session = getattr(getattr(client, "_server", None), "_session", None)
        if session is not None:  # the client's httpx session waits forever by default
            session.timeout = timeout
        return client.get_or_create_collection(
            self.name, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )

    def close(self) -> None:
        with self._lock:
            self._collection = None

    def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors the server has for `ids` (malformed ones left out: they are re-embedded)."""
        collection = self.collection()
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), PAGE):
            got = collection.get(ids=list(ids[start : start + PAGE]), include=["embeddings"])
            embeddings = got.get("embeddings")
            if embeddings is None:
                continue
            for chunk_id, vector in zip(got["ids"], embeddings, strict=True):
                array = np.asarray(vector, dtype=np.float32)
                if self._usable(array):
                    found[chunk_id] = array
        return found

    def _usable(self, vector: np.ndarray) -> bool:
        # A wrong shape or NaN would break the local collection; such a vector is embedded again.
        if vector.ndim != 1 or not np.all(np.isfinite(vector)):
            return False
        return self.dimension is None or vector.shape[0] == self.dimension

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the server has (no vectors transferred)."""
        collection = self.collection()
        found: set[str] = set()
        for start in range(0, len(ids), PAGE):
            found.update(collection.get(ids=list(ids[start : start + PAGE]), include=[])["ids"])
        return found

    def ids(self) -> set[str]:
        collection = self.collection()
        found: set[str] = set()
        offset = 0
        while True:
            page = collection.get(include=[], limit=PAGE, offset=offset)["ids"]
            found.update(page)
            if len(page) < PAGE:
                return found
            offset += len(page)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        collection = self.collection()
        for start in range(0, len(ids), PAGE):
            collection.upsert(
                ids=list(ids[start : start + PAGE]), embeddings=vectors[start : start + PAGE]
            )

    def delete(self, ids: Sequence[str]) -> None:
        collection = self.collection()
        for start in range(0, len(ids), PAGE):
            collection.delete(ids=list(ids[start : start + PAGE]))

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        result = self.collection().query(
            query_embeddings=[vector], n_results=n, include=["distances"]
        )
        if not result["ids"]:
            return []
        ids = result["ids"][0]
        distances = result["distances"][0] if result.get("distances") else [0.0] * len(ids)
        return list(zip(ids, (float(d) for d in distances), strict=True))
