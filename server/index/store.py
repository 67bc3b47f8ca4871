"""The index on disk: a SQLite manifest + chunk table + FTS5 lexical index, and a Chroma collection.

SQLite is the source of truth. A file is replaced in one SQLite transaction (manifest row, chunk
rows, FTS rows, and the dense bookkeeping: ids waiting for a vector, ids whose vector must go), so
a crash at any point leaves either the old or the new version of that file, never half of one.
Chroma only holds vectors keyed by deterministic chunk ids; it is brought in line with SQLite on
open (vectors of unknown ids deleted, missing ones queued), so a SIGKILL anywhere and a restart
yield exactly the fresh-index chunk set. A changed index format rebuilds the index from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.config import Settings, cache_dir
from repotune.server.index.chunking import Chunk
from repotune.server.index.database import StoreError, connect, open_database
from repotune.server.index.definition_index import DefinitionIndex
from repotune.server.index.folder import DB_NAME, IndexFolderError, claim
from repotune.server.index.lexical import LexicalIndex, TermCounts, fts_body, fts_names
from repotune.server.index.vectors import Vectors, VectorStoreError

__all__ = ["DB_NAME", "FileRecord", "Store", "StoreError", "embed_text", "index_location"]


def index_location(workspace: Path, settings: Settings) -> Path:
    """Where a workspace's index lives: the cache dir unless `index.index_dir` says otherwise."""
    resolved = workspace.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", resolved.name) or "root"
    per_workspace = f"{name}-{digest}"
    if settings.index.index_dir:
        # A relative index_dir belongs to its workspace; an absolute one may be shared by every
        # folder of a multi-root editor session, so each workspace gets its own folder inside it.
        configured = Path(settings.index.index_dir).expanduser()
        if not configured.is_absolute():
            return (workspace / configured).resolve()
        return configured / per_workspace
    return cache_dir() / "indexes" / per_workspace


def embed_text(path: str, kind: str, label: str | None, text: str) -> str:
    """What the embedder sees: a provenance line (path, kind, signature), then the chunk text."""
    return f"{path} {kind} {label or ''}".strip() + "\n" + text


@dataclass(frozen=True)
class FileRecord:
    path: str
    hash: str
    size: int
    mtime_ns: int
    chunk_ids: tuple[str, ...]


class Store:
    """SQLite (truth) + Chroma (vectors) for one workspace. Thread-safe through one lock."""

    def __init__(self, location: Path, dense: bool = True, embedder_id: str | None = None):
        self.location = location
        self.dense_enabled = dense
        self.embedder_id = embedder_id
        self.rebuilt = False
        self.notices: list[str] = []  # what was repaired on the way (shown in the status)
        self._lock = threading.RLock()
        try:
            claim(location)
        except IndexFolderError as exc:
            raise StoreError(str(exc)) from exc
        opened = open_database(location)
        self._db = opened.db
        if opened.rebuilt_from is not None:
            self.rebuilt = True
            self.notices.append(f"the index database was rebuilt (it was {opened.rebuilt_from})")
        self.lexical = LexicalIndex(self._db, self._lock, lambda: connect(location))
        self.definitions = DefinitionIndex(self._db, self._lock)
        self.vectors = Vectors(location)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
        self.vectors.close()

    # ------------------------------------------------------------------ chroma

    def collection(self) -> Any:
        """The Chroma collection, created on first use (it never embeds anything itself)."""
        return self.vectors.collection()

    def reconcile_dense(self) -> dict[str, int]:
        """Bring Chroma in line with SQLite after whatever happened (crash, model change, a
        damaged Chroma folder: rebuilt empty, every vector queued again)."""
        if not self.dense_enabled:
            return {"stale": 0, "missing": 0}
        try:
            return self._reconcile_dense()
        except Exception as exc:  # Chroma raises many types for a damaged store
            try:
                self.vectors.reset()
            except VectorStoreError as reset_error:
                raise StoreError(str(reset_error)) from reset_error
            self.notices.append(f"the vector store was damaged ({exc}); it is being rebuilt")
            return self._reconcile_dense()

    def _reconcile_dense(self) -> dict[str, int]:
        with self._lock:
            stored = self._db.execute("SELECT value FROM meta WHERE key='embedder'").fetchone()
        if self.embedder_id and stored and stored[0] != self.embedder_id:
            self.vectors.clear()  # vectors of another embedder mean nothing next to the new ones
        if self.embedder_id:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (self.embedder_id,)
                )
        in_chroma = self.vectors.ids()
        with self._lock:
            in_sqlite = {row[0] for row in self._db.execute("SELECT id FROM chunks")}
            pending = {row[0] for row in self._db.execute("SELECT id FROM dense_pending")}
        stale = sorted(in_chroma - in_sqlite)
        missing = sorted(in_sqlite - in_chroma - pending)
        if stale:
            self.delete_vectors(stale)
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM dense_deleted")
            self._db.execute("DELETE FROM dense_pending WHERE id NOT IN (SELECT id FROM chunks)")
            self._db.executemany(
                "INSERT OR IGNORE INTO dense_pending VALUES (?, 1)", [(i,) for i in missing]
            )
        return {"stale": len(stale), "missing": len(missing)}

    def upsert_vectors(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self.vectors.upsert(ids, vectors)

    def delete_vectors(self, ids: Sequence[str]) -> None:
        self.vectors.delete(ids)

    def dense_query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest chunk ids by cosine distance (ids may be stale: callers check in SQLite)."""
        return self.vectors.query(vector, n)

    def vector_ids(self) -> set[str]:
        return self.vectors.ids()

    # ------------------------------------------------------------------ writing files

    def replace_file(
        self,
        path: str,
        file_hash: str,
        size: int,
        mtime_ns: int,
        language: str,
        encoding: str,
        chunks: Sequence[Chunk],
        priority: int = 1,
    ) -> tuple[int, int]:
        """Replace one file's chunks atomically; returns (chunks added, chunks removed)."""
        new_ids = [chunk.id for chunk in chunks]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old_ids = {
                row[0] for row in self._db.execute("SELECT id FROM chunks WHERE path = ?", (path,))
            }
            self._delete_rows(path)
            for chunk in chunks:
                cursor = self._db.execute(
                    "INSERT INTO chunks(id, path, start_line, end_line, symbol, kind, language,"
                    " parent, signature, file_hash, text, defines)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        chunk.id,
                        path,
                        chunk.start_line,
                        chunk.end_line,
                        chunk.symbol,
                        chunk.kind,
                        chunk.language,
                        chunk.parent,
                        chunk.signature,
                        file_hash,
                        chunk.text,
                        " ".join(chunk.defines),
                    ),
                )
                self._db.execute(
                    "INSERT INTO chunks_fts(rowid, names, body) VALUES (?, ?, ?)",
                    (cursor.lastrowid, fts_names(chunk), fts_body(chunk)),
                )
                self._db.executemany(
                    "INSERT INTO definitions(name, chunk_id, path) VALUES (?, ?, ?)",
                    [(name, chunk.id, path) for name in chunk.defines],
                )
            added = [i for i in new_ids if i not in old_ids]
            removed = [i for i in old_ids if i not in set(new_ids)]
            self._dense_bookkeeping(added, removed, priority)
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                (
                    path,
                    file_hash,
                    size,
                    mtime_ns,
                    language,
                    encoding,
                    json.dumps(new_ids),
                    time.time(),
                ),
            )
            self._db.execute("DELETE FROM skipped WHERE path = ?", (path,))
        return len(added), len(removed)

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new stat: remember it so the next scan need not read the file."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def remove_file(self, path: str, skipped_reason: str | None = None) -> int:
        """Forget one file (deleted, moved away, or now ignored); returns chunks removed."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old_ids = [
                row[0] for row in self._db.execute("SELECT id FROM chunks WHERE path = ?", (path,))
            ]
            self._delete_rows(path)
            self._dense_bookkeeping([], old_ids, 0)
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))
            if skipped_reason:
                self._db.execute(
                    "INSERT OR REPLACE INTO skipped VALUES (?, ?)", (path, skipped_reason)
                )
        return len(old_ids)

    def _delete_rows(self, path: str) -> None:
        self.lexical.wrote()
        self._db.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT rowid FROM chunks WHERE path = ?)",
            (path,),
        )
        self._db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        self._db.execute("DELETE FROM definitions WHERE path = ?", (path,))

    def _dense_bookkeeping(self, added: list[str], removed: list[str], priority: int) -> None:
        if not self.dense_enabled:
            return
        self._db.executemany("DELETE FROM dense_pending WHERE id = ?", [(i,) for i in removed])
        self._db.executemany(
            "INSERT OR IGNORE INTO dense_deleted VALUES (?)", [(i,) for i in removed]
        )
        self._db.executemany("DELETE FROM dense_deleted WHERE id = ?", [(i,) for i in added])
        self._db.executemany(
            "INSERT OR REPLACE INTO dense_pending VALUES (?, ?)", [(i, priority) for i in added]
        )

    def set_skipped(self, skipped: Iterable[tuple[str, str]], replace_all: bool = False) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            if replace_all:
                self._db.execute("DELETE FROM skipped")
            self._db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?)", list(skipped))

    # ------------------------------------------------------------------ dense queue

    def pending_batch(self, limit: int) -> list[tuple[str, str]]:
        """(chunk id, text to embed) for chunks still waiting for a vector, edits first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id, c.path, c.kind, c.signature, c.symbol, c.text FROM dense_pending p"
                " JOIN chunks c ON c.id = p.id ORDER BY p.priority, c.rowid LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            (
                row["id"],
                embed_text(
                    row["path"], row["kind"], row["signature"] or row["symbol"], row["text"]
                ),
            )
            for row in rows
        ]

    def mark_embedded(self, ids: Sequence[str]) -> list[str]:
        """Drop ids from the pending queue; returns those whose chunk is gone meanwhile."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM dense_pending WHERE id = ?", [(i,) for i in ids])
            marks = ",".join("?" * len(ids))
            present = {
                row[0]
                for row in self._db.execute(
                    f"SELECT id FROM chunks WHERE id IN ({marks})", list(ids)
                )
            }
        return [i for i in ids if i not in present]

    def take_deleted(self, limit: int = 5000) -> list[str]:
        with self._lock:
            return [
                row[0] for row in self._db.execute("SELECT id FROM dense_deleted LIMIT ?", (limit,))
            ]

    def clear_deleted(self, ids: Sequence[str]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM dense_deleted WHERE id = ?", [(i,) for i in ids])

    def dense_pending_count(self, path: str | None = None) -> int:
        with self._lock:
            if path is None:
                return int(self._db.execute("SELECT count(*) FROM dense_pending").fetchone()[0])
            return int(
                self._db.execute(
                    "SELECT count(*) FROM dense_pending p JOIN chunks c ON c.id = p.id"
                    " WHERE c.path = ?",
                    (path,),
                ).fetchone()[0]
            )

    def dense_deleted_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dense_deleted").fetchone()[0])

    # ------------------------------------------------------------------ reading

    def files(self) -> dict[str, FileRecord]:
        with self._lock:
            rows = self._db.execute("SELECT path, hash, size, mtime_ns, chunk_ids FROM files")
            return {
                row[0]: FileRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])))
                for row in rows
            }

    def file_hashes(self) -> dict[str, str]:
        """Every indexed file's content hash (the repository n-grams' change check)."""
        with self._lock:
            return {row[0]: row[1] for row in self._db.execute("SELECT path, hash FROM files")}

    def file_segments(self, path: str) -> list[str]:
        """The file's indexed (redacted) text from its chunks, as runs of consecutive lines;
        lines no chunk holds split the runs."""
        return [text for _, text in self.file_runs(path)]

    def file_runs(self, path: str) -> list[tuple[int, str]]:
        """file_segments with the 1-based line each run starts on."""
        with self._lock:
            rows = self._db.execute(
                "SELECT start_line, text FROM chunks WHERE path = ? ORDER BY start_line", (path,)
            ).fetchall()
        runs: list[tuple[int, list[str]]] = []
        next_line = 0  # the first line not yet taken
        for start_line, text in rows:
            lines = text.split("\n")
            skip = max(0, next_line - start_line)
            if skip >= len(lines):
                continue
            if not runs or start_line + skip != next_line:
                runs.append((start_line + skip, []))
            runs[-1][1].extend(lines[skip:])
            next_line = start_line + len(lines)
        return [(first, "\n".join(lines)) for first, lines in runs]

    def file(self, path: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT path, hash, size, mtime_ns, chunk_ids FROM files WHERE path = ?", (path,)
            ).fetchone()
        if row is None:
            return None
        return FileRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])))

    def paths_under(self, prefix: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path FROM files WHERE path = ? OR substr(path, 1, ?) = ?",
                (prefix, len(prefix) + 1, prefix + "/"),
            )
            return [row[0] for row in rows]

    def chunk_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM chunks")}

    def chunk_rows(self) -> list[tuple[Any, ...]]:
        """Every chunk as a plain tuple (tests compare whole indexes with this)."""
        with self._lock:
            return [
                tuple(row)
                for row in self._db.execute(
                    "SELECT id, path, start_line, end_line, symbol, kind, language, parent,"
                    " signature, file_hash, text, defines FROM chunks"
                    " ORDER BY path, start_line, id"
                )
            ]

    def get_chunks(self, ids: Sequence[str]) -> dict[str, sqlite3.Row]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM chunks WHERE id IN ({marks})", list(ids))
            return {row["id"]: row for row in rows}

    def lexical_search(self, query: str, n: int) -> list[tuple[str, float]]:
        """Chunk ids ranked by BM25 over code-aware tokens (names weigh more than bodies)."""
        return self.lexical.search(query, n)

    def phrase_search(self, phrases: Sequence[str], n: int) -> list[tuple[str, float]]:
        """Chunk ids holding one of `phrases` word for word (a quoted docstring or message)."""
        return self.lexical.phrase_search(phrases, n)

    def paths_naming(self, name: str, n: int) -> tuple[list[str], int]:
        """Files whose code holds identifier `name` (any case; a caller checks the case), the
        first `n` by path, and how many there are."""
        return self.lexical.paths_naming(name, n)

    def refresh_term_counts(self) -> TermCounts:
        """Read every term's document count (queries then never pay for it)."""
        return self.lexical.refresh_counts()

    def chunk_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
            pending = self._db.execute("SELECT count(*) FROM dense_pending").fetchone()[0]
            reasons = dict(
                self._db.execute("SELECT reason, count(*) FROM skipped GROUP BY reason").fetchall()
            )
        return {
            "files": int(files),
            "chunks": int(chunks),
            "dense_pending": int(pending) if self.dense_enabled else None,
            "skipped": {str(k): int(v) for k, v in reasons.items()},
            "location": str(self.location),
            "notices": list(self.notices[-5:]),
        }

    def skipped(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT path, reason FROM skipped").fetchall())
