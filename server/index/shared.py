"""The shared index as a cache in front of the embedder: consulted before embedding, filled after.

The local Chroma collection stays the only store queries read (so search works offline and never
waits on the network); the server only saves embedding work. Any failure (down, slow, refused)
is recorded in `status()` and the server is left alone for a backoff period, doubling up to
`BACKOFF_MAX_S`; meanwhile the dense pass embeds locally as if no server were configured.
Vectors embedded while the server was away are not queued for it: `repotune index --push`
uploads whatever the server lacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from repotune.server.index.remote_vectors import ChromaServer, RemoteVectors
from repotune.server.index.vectors import Vectors

BACKOFF_START_S = 5.0
BACKOFF_MAX_S = 300.0
# One failure message is kept short: it is shown in the editor's status.
REASON_CHARS = 200


class SharedCache:
    """Never raises from `fetch`/`push`: a failure turns into state "unreachable: <why>"."""

    def __init__(self, remote: RemoteVectors) -> None:
        self.remote = remote
        self.state = "not contacted"
        self.fetched = 0
        self.pushed = 0
        self.failures = 0
        self._retry_at = 0.0
        self._backoff = BACKOFF_START_S
        self._lock = threading.Lock()

    @classmethod
    def for_server(
        cls, server: ChromaServer, collection: str, dimension: int | None
    ) -> SharedCache:
        return cls(RemoteVectors(server, collection, dimension))

    def available(self) -> bool:
        """Whether the server may be tried now (not within a backoff period)."""
        return time.monotonic() >= self._retry_at

    def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors the server already has for `ids`; {} when it is unavailable."""
        if not ids or not self.available():
            return {}
        with self._lock:
            try:
                answer = self.remote.fetch(ids)
            except Exception as exc:  # chromadb and httpx raise many types
                self._failed(exc)
                return {}
            # Only what was asked for, in the order asked (a server's extra ids are ignored).
            found = {chunk_id: answer[chunk_id] for chunk_id in ids if chunk_id in answer}
            self._succeeded()
            self.fetched += len(found)
            return found

    def push(self, ids: Sequence[str], vectors: np.ndarray) -> bool:
        """Upload vectors the server lacked; False when it is unavailable."""
        if not ids or not self.available():
            return False
        with self._lock:
            try:
                self.remote.upsert(ids, vectors)
            except Exception as exc:
                self._failed(exc)
                return False
            self._succeeded()
            self.pushed += len(ids)
            return True

    def push_missing(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Upload those of `ids` the server lacks (the `--push` command); raises on failure."""
        with self._lock:
            try:
                present = self.remote.present(ids)
                keep = [i for i, chunk_id in enumerate(ids) if chunk_id not in present]
                if keep:
                    self.remote.upsert([ids[i] for i in keep], vectors[keep])
            except Exception as exc:
                self._failed(exc)
                raise
            self._succeeded()
            self.pushed += len(keep)
            return len(keep)

    def _succeeded(self) -> None:
        self.state = "ok"
        self._backoff = BACKOFF_START_S
        self._retry_at = 0.0

    def _failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:REASON_CHARS]
        self.state = f"unreachable: {reason}"
        self.failures += 1
        self.remote.close()  # a fresh connection (and heartbeat) on the next try
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)

    def status(self) -> dict[str, Any]:
        retry = max(0.0, self._retry_at - time.monotonic())
        return {
            "url": self.remote.server.url,
            "collection": self.remote.name,
            "state": self.state,
            "fetched": self.fetched,
            "pushed": self.pushed,
            "failures": self.failures,
            "retry_in_s": round(retry, 1) if retry else None,
        }

    def close(self) -> None:
        self.remote.close()


def push_all(vectors: Vectors, cache: SharedCache, page: int = 1000) -> dict[str, int]:
    """Upload every local vector the server lacks (pre-filling it for a team); raises when the
    server cannot be reached."""
    total = uploaded = 0
    for ids, page_vectors in vectors.pages(page):
        total += len(ids)
        uploaded += cache.push_missing(ids, page_vectors)
    return {"vectors": total, "uploaded": uploaded, "already_there": total - uploaded}
