"""Full scan and incremental updates of one workspace index.

Three pieces, each driven by its own thread in `WorkspaceIndex`:
- `Indexer`: reconcile with the disk (stat first, read and hash only what changed) and update one
  path (file, directory, deleted or moved) at a time; lexical data lands at once.
- `DenseFiller`: embeds chunks still waiting for a vector, in batches, edits first, and deletes
  vectors of chunks that are gone. Retrieval uses whatever exists meanwhile.
- `Debouncer` + `WatchHandler`: watchdog events are filtered (ignored paths cost nothing),
  coalesced per path (a burst of saves becomes one or two updates) and handed to one worker
  through a bounded queue; an overflow degrades into one full reconcile, never lost work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from repotune.server.chunking import Chunker, language_for
from repotune.server.config import CONFIG_FILE_NAME
from repotune.server.embeddings import QueryFirstLock
from repotune.server.files import (
    IGNORE_FILE_NAMES,
    ContentSkip,
    FileEntry,
    Skipped,
    WorkspaceFilter,
    read_text_file,
)
from repotune.server.store import Store
from watchdog.events import FileSystemEvent, FileSystemEventHandler

Emit = Callable[[dict[str, Any]], None]
PRIORITY_EDIT = 0
PRIORITY_FULL = 1
RESCAN = "\0rescan"
# Files at the workspace root whose change means new settings for the workspace.
SETTINGS_FILE_NAMES = (CONFIG_FILE_NAME, "pyproject.toml")
# The dense fill embeds a batch in slices this small (~0.3 s on 2 cores) and lets a waiting
# query in between them; the vectors are still stored once per batch.
EMBED_SLICE = 8


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
    """Gives every chunk its vector, behind the lexical index; edits go first."""

    def __init__(
        self,
        store: Store,
        get_embedder: Callable[[], Any],
        embed_lock: QueryFirstLock,
        batch_size: int,
        emit: Emit,
    ) -> None:
        self.store = store
        self.get_embedder = get_embedder
        self.embed_lock = embed_lock
        self.batch_size = batch_size
        self.emit = emit
        self.embed_seconds = 0.0
        self.embedded = 0
        self.busy_seconds = 0.0

    def step(self) -> int:
        """One batch: delete vectors of gone chunks, embed and store pending ones."""
        started = time.perf_counter()
        deleted = self.store.take_deleted()
        if deleted:
            self.store.delete_vectors(deleted)
            self.store.clear_deleted(deleted)
        batch = self.store.pending_batch(self.batch_size)
        if not batch:
            if deleted:
                self.busy_seconds += time.perf_counter() - started
            return 0
        embedder = self.get_embedder()
        ids = [chunk_id for chunk_id, _ in batch]
        texts = [text for _, text in batch]
        parts = []
        for start in range(0, len(texts), EMBED_SLICE):
            with self.embed_lock.for_background():  # queries may go between slices
                embed_started = time.perf_counter()
                parts.append(embedder.embed(texts[start : start + EMBED_SLICE]))
                self.embed_seconds += time.perf_counter() - embed_started
        self.store.upsert_vectors(ids, np.concatenate(parts))
        gone = self.store.mark_embedded(ids)
        if gone:  # replaced while we embedded them: their vectors must not stay
            self.store.delete_vectors(gone)
        self.embedded += len(ids)
        self.busy_seconds += time.perf_counter() - started
        return len(ids)


class Debouncer:
    """Coalesces events per path. The first change after a quiet spell goes after `settle`
    seconds; further changes to the same path wait until `interval` has passed since its last
    release, so a burst of N saves costs a bounded number of updates, not N."""

    def __init__(self, interval: float, settle: float = 0.05) -> None:
        self.interval = interval
        self.settle = min(settle, interval)
        self._due: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self._released: dict[str, float] = {}
        self._cond = threading.Condition()

    def add(self, rel: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._cond:
            due = now + self.settle
            last = self._released.get(rel)
            if last is not None and now - last < self.interval:
                due = max(due, last + self.interval)
            first = self._first.setdefault(rel, now)
            due = max(due, self._due.get(rel, 0.0))
            # never postpone one path forever while it keeps changing
            due = min(due, first + self.interval + self.settle)
            self._due[rel] = max(due, now + min(self.settle, 0.01))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def pop_due(self, timeout: float) -> list[str]:
        """Paths whose time has come, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                ready = sorted(
                    (rel for rel, due in self._due.items() if due <= now), key=self._due.__getitem__
                )
                if ready:
                    for rel in ready:
                        del self._due[rel]
                        self._first.pop(rel, None)
                        self._released[rel] = now
                    if len(self._released) > 10_000:
                        cutoff = now - self.interval
                        self._released = {k: v for k, v in self._released.items() if v > cutoff}
                    return ready
                if now >= deadline:
                    return []
                next_due = min(self._due.values(), default=deadline)
                self._cond.wait(max(0.001, min(deadline, next_due) - now))

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class WatchHandler(FileSystemEventHandler):
    """Turns watchdog events into workspace-relative paths for the debouncer."""

    def __init__(
        self,
        root: Path,
        file_filter: WorkspaceFilter,
        debouncer: Debouncer,
        request_rescan: Callable[[], None],
        index_dir: Path | None = None,
        directory_changed: Callable[[str], None] | None = None,
        settings_changed: Callable[[], None] | None = None,
        root_deleted: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.filter = file_filter
        self.debouncer = debouncer
        self.request_rescan = request_rescan
        self.index_dir = index_dir
        self.directory_changed = directory_changed
        self.settings_changed = settings_changed
        self.root_deleted = root_deleted
        self.ignored_events = 0

    def _rel(self, raw: str | bytes) -> str | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        path = Path(text)
        if self.index_dir is not None and path.is_relative_to(self.index_dir):
            return None
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        value = rel.as_posix()
        return None if value in ("", ".") else value

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type in ("deleted", "moved") and self.root_deleted is not None:
            source = event.src_path
            if Path(source.decode() if isinstance(source, bytes) else source) == self.root:
                self.root_deleted()  # its watches died with it
        paths = [event.src_path]
        if event.event_type == "moved":
            paths.append(event.dest_path)
        for raw in paths:
            rel = self._rel(raw)
            if rel is None:
                continue
            self._route(rel, event.is_directory, event.event_type)

    def _route(self, rel: str, is_directory: bool, event_type: str) -> None:
        parts = PurePosixPath(rel).parts
        if parts[0] == ".git":
            if rel == ".git/info/exclude":
                self.request_rescan()
            else:
                self.ignored_events += 1
            return
        if parts[-1] in IGNORE_FILE_NAMES:
            self.request_rescan()  # the rules changed: a full (stat-only) pass finds out what
            return
        if rel in SETTINGS_FILE_NAMES and not is_directory and self.settings_changed is not None:
            self.settings_changed()  # re-read and applied by the owner; still indexed below
        if is_directory:
            if event_type == "modified":
                return  # a directory's mtime changes with its entries, which have own events
            if self.directory_changed is not None:
                self.directory_changed(rel)  # the set of watches may have to follow
            if self.filter.dir_path_ignored(rel):
                self.ignored_events += 1
                return
        elif self.filter.path_reason(rel) == "ignored":
            self.ignored_events += 1
            return
        self.debouncer.add(rel)


def drain_into(
    debouncer: Debouncer,
    work: queue.Queue[str],
    stop: threading.Event,
    request_rescan: Callable[[], None],
) -> None:
    """Debounce thread body: move due paths into the bounded work queue."""
    while not stop.is_set():
        for rel in debouncer.pop_due(timeout=0.2):
            try:
                work.put_nowait(rel)
            except queue.Full:
                request_rescan()
