"""Full scan and incremental updates of one workspace index.

Three pieces, each driven by its own thread in `WorkspaceIndex`:
- `Indexer`: reconcile with the disk (stat first, read and hash only what changed) and update one
  path (file, directory, deleted or moved) at a time; lexical data lands at once.
- `DenseFiller`: embeds chunks still waiting for a vector, in batches, edits first, and deletes
  vectors of chunks that are gone. Retrieval uses whatever exists meanwhile.
The watch side (which events become which updates) is in watch.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.index.chunking import Chunker
from repotune.server.index.files import (
    ContentSkip,
    FileEntry,
    Skipped,
    WorkspaceFilter,
    read_text_file,
)
from repotune.server.index.shared import SharedCache
from repotune.server.index.store import Store
from repotune.server.languages import language_for
from repotune.server.llm.embeddings import QueryFirstLock

Emit = Callable[[dict[str, Any]], None]
PRIORITY_EDIT = 0
PRIORITY_FULL = 1
RESCAN = "\0rescan"
# The dense fill embeds a batch in slices this small (a fraction of a second on a small CPU) and
# lets a waiting query in between them; the vectors are still stored once per batch.
EMBED_SLICE = 8
# With a shared index, a dense step looks up this many batches' ids on the server at once.
SHARED_WINDOW = 8


def progress(phase: str, done: int = 0, total: int = 0, message: str = "") -> dict[str, Any]:
    """A progress event (the LSP server forwards these as work-done progress)."""
    return {"phase": phase, "done": done, "total": total, "message": message}


class _Throttle:
    """Lets progress events through at most every `interval` seconds (and always the last)."""

    def __init__(self, emit: Emit, interval: float = 0.1) -> None:
        self.emit = emit
        self.interval = interval
        self.last = 0.0

    def __call__(self, event: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval or event["done"] >= event["total"]:
            self.last = now
            self.emit(event)


@dataclass
class ReconcileReport:
    scanned: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Indexer:
    """Keeps the store's lexical side (manifest, chunks, FTS) equal to the files on disk."""

    def __init__(
        self,
        root: Path,
        store: Store,
        file_filter: WorkspaceFilter,
        chunker: Chunker,
        max_file_bytes: int,
        emit: Emit,
    ) -> None:
        self.root = root
        self.store = store
        self.filter = file_filter
        self.chunker = chunker
        self.max_file_bytes = max_file_bytes
        self.emit = emit
        self.errors: list[str] = []
        self.index_counts: dict[str, int] = {}  # path -> times (re)indexed, for tests and stats

    def reconcile(self, stop: threading.Event | None = None) -> ReconcileReport:
        """Full pass: index new and changed files, drop deleted/now-ignored ones."""
        started = time.perf_counter()
        report = ReconcileReport()
        self.filter.invalidate()
        self.emit(progress("scan", 0, 0, "listing files"))
        scan = self.filter.scan()
        report.scanned = len(scan.files)
        report.skipped = len(scan.skipped)
        self.store.set_skipped(((s.rel, s.reason) for s in scan.skipped), replace_all=True)
        known = self.store.files()
        on_disk = {entry.rel for entry in scan.files}
        gone = [path for path in known if path not in on_disk]
        for path in gone:
            self.store.remove_file(path)
            report.removed += 1
        total = len(scan.files)
        throttle = _Throttle(self.emit)
        self.emit(progress("lexical", 0, total, f"{total} files"))
        for done, entry in enumerate(scan.files, 1):
            if stop is not None and stop.is_set():
                break
            outcome = self.index_file(entry, PRIORITY_FULL, known.get(entry.rel))
            if outcome == "indexed":
                report.indexed += 1
            elif outcome == "unchanged":
                report.unchanged += 1
            elif outcome.startswith("error"):
                report.errors.append(f"{entry.rel}: {outcome}")
            throttle(progress("lexical", done, total, entry.rel))
        report.seconds = time.perf_counter() - started
        return report

    def index_file(
        self, entry: FileEntry, priority: int, record: Any = None, force: bool = False
    ) -> str:
        """Bring one file up to date; returns indexed, unchanged, skipped:<reason> or error:..."""
        if record is None and not force:
            record = self.store.file(entry.rel)
        if (
            not force
            and record is not None
            and record.size == entry.size
            and record.mtime_ns == entry.mtime_ns
        ):
            return "unchanged"
        try:
            text_file = read_text_file(entry.path, self.max_file_bytes)
        except ContentSkip as skip:
            self.store.remove_file(entry.rel, skipped_reason=skip.reason)
            return f"skipped:{skip.reason}"
        except FileNotFoundError:
            self.store.remove_file(entry.rel)
            return "removed"
        except OSError as exc:
            message = f"error: {exc.strerror or exc}"
            self._error(f"{entry.rel}: {message}")
            return message
        if record is None and force:
            record = self.store.file(entry.rel)
        if record is not None and record.hash == text_file.content_hash:
            self.store.touch_file(entry.rel, entry.size, entry.mtime_ns)
            return "unchanged"
        try:
            chunks = self.chunker.chunk(entry.rel, text_file.text, text_file.content_hash)
        except Exception as exc:  # a grammar crash must not stop the index
            self._error(f"{entry.rel}: chunking failed: {exc}")
            return f"error: chunking failed: {exc}"
        self.store.replace_file(
            entry.rel,
            text_file.content_hash,
            entry.size,
            entry.mtime_ns,
            language_for(entry.rel),
            text_file.encoding,
            chunks,
            priority,
        )
        self.index_counts[entry.rel] = self.index_counts.get(entry.rel, 0) + 1
        return "indexed"

    def update_path(self, rel: str) -> str:
        """React to a change at one path: a file, a directory, or something now gone."""
        path = self.root / rel
        if path.is_dir() and not path.is_symlink():
            if self.filter.dir_path_ignored(rel):
                return "ignored"
            scan = self.filter.scan_subtree(rel)
            present = {entry.rel for entry in scan.files}
            for old in self.store.paths_under(rel):
                if old not in present:
                    self.store.remove_file(old)
            for entry in scan.files:
                self.index_file(entry, PRIORITY_EDIT, force=True)
            return f"directory:{len(scan.files)}"
        state = self.filter.entry_for(rel)
        if state is None:
            removed = self.store.paths_under(rel)
            for old in removed:
                self.store.remove_file(old)
            return f"removed:{len(removed)}"
        if isinstance(state, Skipped):
            if self.store.file(rel) is not None:
                self.store.remove_file(rel, skipped_reason=state.reason)
            elif state.reason != "ignored":
                self.store.set_skipped([(rel, state.reason)])
            return f"skipped:{state.reason}"
        return self.index_file(state, PRIORITY_EDIT, force=True)

    def _error(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-20]


class DenseFiller:
    """Gives every chunk its vector, behind the lexical index; edits go first. With a shared
    index, vectors the server already has are fetched instead of embedded, and the ones embedded
    here are pushed to it."""

    def __init__(
        self,
        store: Store,
        get_embedder: Callable[[], Any],
        embed_lock: QueryFirstLock,
        batch_size: int,
        emit: Emit,
        shared: SharedCache | None = None,
    ) -> None:
        self.store = store
        self.get_embedder = get_embedder
        self.embed_lock = embed_lock
        self.batch_size = batch_size
        self.emit = emit
        self.shared = shared
        self.embed_seconds = 0.0
        self.embedded = 0
        self.fetched = 0
        self.busy_seconds = 0.0

    def step(self) -> int:
        """One batch: delete vectors of gone chunks, fetch or embed and store pending ones."""
        started = time.perf_counter()
        deleted = self.store.take_deleted()
        if deleted:
            self.store.delete_vectors(deleted)
            self.store.clear_deleted(deleted)
        shared = self.shared if self.shared is not None and self.shared.available() else None
        # Looking ids up costs far less than embedding them: a larger window when a server helps.
        window = self.batch_size * SHARED_WINDOW if shared is not None else self.batch_size
        batch = self.store.pending_batch(window)
        if not batch:
            if deleted:
                self.busy_seconds += time.perf_counter() - started
            return 0
        found = shared.fetch([chunk_id for chunk_id, _ in batch]) if shared is not None else {}
        # Misses beyond one batch stay pending: embedding them all would delay edits behind them.
        missing = [(i, text) for i, text in batch if i not in found][: self.batch_size]
        fresh = self._embed([text for _, text in missing])
        ids = [*found, *(chunk_id for chunk_id, _ in missing)]
        parts = [np.stack(list(found.values()))] if found else []
        vectors = np.concatenate([*parts, fresh]) if missing else parts[0]
        self.store.upsert_vectors(ids, vectors)
        if shared is not None and missing:
            shared.push([chunk_id for chunk_id, _ in missing], fresh)
        gone = self.store.mark_embedded(ids)
        if gone:  # replaced while we embedded them: their vectors must not stay
            self.store.delete_vectors(gone)
        self.embedded += len(missing)
        self.fetched += len(found)
        self.busy_seconds += time.perf_counter() - started
        return len(ids)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        embedder = self.get_embedder()
        parts = []
        for start in range(0, len(texts), EMBED_SLICE):
            with self.embed_lock.for_background():  # queries may go between slices
                embed_started = time.perf_counter()
                parts.append(embedder.embed(texts[start : start + EMBED_SLICE]))
                self.embed_seconds += time.perf_counter() - embed_started
        return np.concatenate(parts)
