"""`WorkspaceIndex`: one workspace folder's index, as the LSP server and the CLI use it.

`start()` returns at once; background threads reconcile with the disk (lexical data first), fill
in dense vectors behind it, and (optionally) follow watchdog events. `search()` works at any time
with what exists. Thread layout: one index worker (the only writer of files), one dense filler
(the only user of the embedder besides queries), one debounce thread and the watchdog observer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repotune.server.config import Settings
from repotune.server.index.chunking import Chunker
from repotune.server.index.files import WorkspaceFilter
from repotune.server.index.index_embedder import IndexEmbedder
from repotune.server.index.indexer import RESCAN, DenseFiller, Indexer, ReconcileReport, progress
from repotune.server.index.question_words import candidate_names
from repotune.server.index.remote_vectors import ChromaServer, collection_name
from repotune.server.index.retrieval import (
    HybridRetriever,
    Region,
    RetrievedChunk,
    cursor_queries,
    cursor_region,
    question_names,
    quoted_phrases,
)
from repotune.server.index.shared import SharedCache
from repotune.server.index.store import Store, index_location
from repotune.server.index.watch import Debouncer, Watcher, WatchHandler, WatchPlan, drain_into
from repotune.server.llm.embeddings import SharedEmbedders

log = logging.getLogger(__name__)

WORK_QUEUE_SIZE = 1024
# The most characters of a question that retrieval searches for (the model sees more of it).
MAX_QUESTION_CHARS = 4_000

EventCallback = Callable[[dict[str, Any]], None]


class WorkspaceIndex:
    def __init__(
        self,
        root: Path,
        settings: Settings,
        on_event: EventCallback | None = None,
        *,
        embedder: Any = None,
        location: Path | None = None,
        shared_embedders: SharedEmbedders | None = None,
        on_settings_file: Callable[[], None] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self._on_settings_file = on_settings_file
        self.settings = settings
        self.location = location or index_location(self.root, settings)
        self._on_event = on_event
        self.dense = settings.index.dense
        self.embedding = IndexEmbedder(
            settings.model, embedder, shared_embedders, enabled=self.dense
        )
        self.shared = self._shared_cache()
        self.store = Store(self.location, dense=self.dense, embedder_id=self.embedding.id)
        self.filter = WorkspaceFilter(self.root, settings, extra_skipped_dirs=[self.location])
        self.indexer = Indexer(
            self.root,
            self.store,
            self.filter,
            Chunker(settings.index.chunk_lines, settings.index.chunk_overlap),
            settings.index.max_file_bytes,
            self._emit,
        )
        self.filler = DenseFiller(
            self.store,
            self._get_embedder,
            self.embedding.lock,
            settings.index.embed_batch_size,
            self._emit,
            self.shared,
        )
        self.retriever = HybridRetriever(
            self.store,
            self.embedding.embed_query,
            settings.retrieval.rrf_k,
            settings.retrieval.definition_weight,
            settings.retrieval.same_name_weight,
        )
        self.debouncer = Debouncer(settings.index.debounce_ms / 1000)
        self._work: queue.Queue[str] = queue.Queue(maxsize=WORK_QUEUE_SIZE)
        self._stop = threading.Event()
        self._dense_wakeup = threading.Event()
        self._lexical_ready = threading.Event()
        self._rescan = threading.Event()
        self._worker_busy = threading.Event()
        self._unreported_work = threading.Event()  # work done since the last "idle" event
        self._settle_lock = threading.Lock()
        self._dense_busy = threading.Event()
        self._dense_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self.watcher = Watcher(
            self.root,
            self.filter,
            self.debouncer,
            self.location,
            request_rescan=self._request_rescan,
            settings_changed=self._settings_file_changed,
            is_new_directory=self._is_new_directory,
            report_error=self.indexer.errors.append,
            stop=self._stop,
        )
        self.last_reconcile: ReconcileReport | None = None
        self.phase = "new"
        self.timings: dict[str, float] = {}
        self._started_at = 0.0

    # ------------------------------------------------------------------ embedder

    def _shared_cache(self) -> SharedCache | None:
        """The team's vector cache, when `index.chroma_url` is set and vectors are computed."""
        server = ChromaServer.from_settings(self.settings.index)
        sha256 = self.embedding.sha256
        if server is None or not self.dense or sha256 is None:
            return None
        return SharedCache.for_server(server, collection_name(sha256), self.embedding.dimension)

    @property
    def embedder_error(self) -> str | None:
        """Why the index has no vectors (lexical-only), or None."""
        return self.embedding.error

    @embedder_error.setter
    def embedder_error(self, reason: str | None) -> None:
        self.embedding.error = reason

    def _get_embedder(self) -> Any:
        loaded = self.embedding.model is not None
        model = self.embedding.get()
        if not loaded and self.shared is not None:  # fetched vectors are checked against this size
            self.shared.remote.dimension = self.embedding.dimension
        return model

    def load_query_embedder(self) -> None:
        """Load the embedder now (the CLI's search wants dense results without a dense fill)."""
        with self.embedding.lock.for_background():
            self._get_embedder()

    # ------------------------------------------------------------------ lifecycle

    def start(self, watch: bool = False, dense: bool | None = None) -> None:
        """Reconcile, index lexically, fill dense vectors, optionally watch; returns at once."""
        if self._threads:
            raise RuntimeError("WorkspaceIndex.start() called twice")
        if dense is not None:
            self.dense = dense and self.settings.index.dense
        self._started_at = time.perf_counter()
        if watch:
            self.watcher.start(self._spawn)
        self._spawn("repotune-index-worker", self._worker_loop)
        self._spawn("repotune-debounce", self._debounce_loop)
        if self.dense and self.embedder_error is None:
            self._spawn("repotune-dense", self._dense_loop)
        else:
            self._dense_done.set()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    @property
    def watch_handler(self) -> WatchHandler | None:
        return self.watcher.handler

    def watched_directories(self) -> WatchPlan:
        """The directories watched now ('' = the root) and whether recursively."""
        return self.watcher.watched()

    def _is_new_directory(self, rel: str) -> bool:
        """Not indexed yet although the first pass is done: its files may predate its watch."""
        return self._lexical_ready.is_set() and not self.store.paths_under(rel)

    def _settings_file_changed(self) -> None:
        """repotune.toml (or pyproject.toml) changed: the owner re-reads and applies it, off the
        watchdog thread (applying may replace this index, which stops the observer)."""
        if self._on_settings_file is not None:
            threading.Thread(
                target=self._on_settings_file, name="repotune-settings-file", daemon=True
            ).start()

    def apply_filter_settings(self, settings: Settings) -> None:
        """New exclude/include/secret rules or size limit: a new filter and a full pass (files
        now excluded leave the index, files now included enter it)."""
        new_filter = WorkspaceFilter(self.root, settings, extra_skipped_dirs=[self.location])
        self.settings = settings
        self.filter = new_filter
        self.indexer.filter = new_filter
        self.indexer.max_file_bytes = settings.index.max_file_bytes
        self.watcher.set_filter(new_filter)
        self._request_rescan()

    def close(self) -> None:
        """Stop watching and working (the current file or batch completes), close the store."""
        self._stop.set()
        self.watcher.stop()
        self.debouncer.wake()
        self._dense_wakeup.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.store.close()
        if self.shared is not None:
            self.shared.close()
        self.embedding.close()
        self.phase = "closed"

    def __enter__(self) -> WorkspaceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ threads

    def _worker_loop(self) -> None:
        self._begin_work()
        try:
            self._reconcile()
            self.timings["lexical_ready_s"] = time.perf_counter() - self._started_at
        finally:
            # Not busy before ready: the dense thread must never see "ready" while this one works.
            self._worker_busy.clear()
            self._lexical_ready.set()
        self._report_if_settled()
        while not self._stop.is_set():
            if self._rescan.is_set():
                self._rescan.clear()
                self._begin_work()
                try:
                    self._reconcile()
                finally:
                    self._worker_busy.clear()
                self._report_if_settled()
                continue
            try:
                rel = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            self._begin_work()
            try:
                if rel == RESCAN:
                    self._reconcile()
                else:
                    self.indexer.update_path(rel)
            except Exception as exc:  # one bad path must not stop the worker
                log.exception("indexing %s failed", rel)
                self.indexer.errors.append(f"{rel}: {exc}")
            finally:
                self._worker_busy.clear()
                self._dense_wakeup.set()
            self._report_if_settled()

    def _begin_work(self) -> None:
        """The worker is busy, and its work is to be reported once everything settles."""
        self._unreported_work.set()
        self._worker_busy.set()

    def _reconcile(self) -> None:
        self.phase = "lexical"
        report = self.indexer.reconcile(self._stop)
        self.last_reconcile = report
        self.store.refresh_term_counts()  # so that no query pays for reading them
        self.watcher.refresh()  # ignore rules may have changed which directories matter
        self._dense_wakeup.set()
        stats = self.store.stats()
        self._emit(
            progress(
                "lexical",
                report.scanned,
                report.scanned,
                f"{stats['files']} files, {stats['chunks']} chunks",
            )
        )

    def _report_if_settled(self) -> None:
        """Say "idle" when the last piece of work has settled, whichever thread did it: a
        status computed while another thread was still busy would otherwise stay "indexing"."""
        with self._settle_lock:
            if not self._unreported_work.is_set() or not self._work.empty() or not self.is_idle():
                return  # nothing new to report, or another thread will settle last
            self._unreported_work.clear()
            self.phase = "idle"
        chunks = int(self.store.stats().get("chunks", 0) or 0)
        self._emit(progress("idle", chunks, chunks, "index up to date"))

    def _debounce_loop(self) -> None:
        drain_into(self.debouncer, self._work, self._stop, self._request_rescan)

    def _dense_loop(self) -> None:
        try:
            self.store.reconcile_dense()
            self._get_embedder()
        except Exception as exc:  # no embedder: the index stays useful lexically
            self.embedder_error = f"dense index disabled: {exc}"
            log.warning("%s", self.embedder_error)
            self._emit(progress("idle", 0, 0, self.embedder_error))
            self._dense_done.set()
            return
        # Dense work waits for the first lexical pass: lexical search is what users need first.
        while not self._lexical_ready.wait(0.2):
            if self._stop.is_set():
                return
        fill_start = time.perf_counter()
        done_in_fill = 0
        total = self.store.dense_pending_count()
        while not self._stop.is_set():
            # An idle wakeup must never look busy: a status computed then would say "indexing".
            count = self._dense_step() if self._dense_work_left() else 0
            if count:
                self._unreported_work.set()
                self._dense_done.clear()
                done_in_fill += count
                total = max(total, done_in_fill + self.store.dense_pending_count())
                self.phase = "dense"
                self._emit(progress("dense", done_in_fill, total, "embedding chunks"))
                continue
            if not self._dense_done.is_set():
                if "dense_ready_s" not in self.timings:
                    self.timings["dense_ready_s"] = time.perf_counter() - self._started_at
                    self.timings["dense_fill_s"] = time.perf_counter() - fill_start
                self._dense_done.set()
                done_in_fill = total = 0
            self._report_if_settled()  # cheap when nothing is new; a worker may have ended first
            self._dense_wakeup.wait(0.5)
            self._dense_wakeup.clear()

    def _dense_step(self) -> int:
        """One batch of dense work (vectors embedded or deleted), flagged busy while it runs."""
        self._dense_busy.set()
        try:
            return self.filler.step()
        except Exception as exc:
            log.exception("dense step failed")
            self.indexer.errors.append(f"dense: {exc}")
            self._stop.wait(1.0)
            return 0
        finally:
            self._dense_busy.clear()

    # ------------------------------------------------------------------ API

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken listener must not break indexing
                log.exception("progress callback failed")

    def _request_rescan(self) -> None:
        self._rescan.set()

    def search(
        self,
        query: str,
        k: int | None = None,
        exclude: Region | None = None,
        dense_query: str | None = None,
        names: tuple[str, ...] = (),
        symbols: tuple[str, ...] = (),
        phrases: tuple[str, ...] = (),
        enclosing: str | None = None,
    ) -> list[RetrievedChunk]:
        """Top-k chunks for a query, fused from what exists now (thread-safe)."""
        top_k = self.settings.retrieval.top_k if k is None else k
        return self.retriever.search(
            query, top_k, exclude, dense_query, names, symbols, phrases, enclosing
        )

    def search_question(
        self,
        question: str,
        k: int | None = None,
        used_names: Sequence[str] = (),
        in_view: str = "",
    ) -> list[RetrievedChunk]:
        """Chunks for a question: its text (the start of a pasted log), plus where the code it
        names is defined, then the names its plain words may mean (`cache directory`:
        `cache_dir`), and the chunks holding a sentence it quotes word for word; the one recipe
        of `repotune ask`, the editors and the evaluation. With the code in view (`in_view`),
        code like it (embedded with the question) and where the names that code uses
        (`used_names`) are defined."""
        question = question[:MAX_QUESTION_CHARS]
        symbols, names = question_names(question)
        meant = tuple(name for name in candidate_names(question) if name not in names)
        used = tuple(name for name in used_names if name not in names and name not in meant)
        phrases = quoted_phrases(question)
        dense = f"{question}\n{in_view[:MAX_QUESTION_CHARS]}" if in_view else None
        return self.search(
            question,
            k,
            dense_query=dense,
            names=names + meant + used,
            symbols=symbols,
            phrases=phrases,
        )

    def search_cursor(
        self, path: str, prefix: str, suffix: str, k: int | None = None
    ) -> list[RetrievedChunk]:
        """Context for a cursor in `path` (workspace-relative), its own window excluded; the one
        query recipe shared by the server, the CLI, the benchmarks and the dataset builder."""
        retrieval = self.settings.retrieval
        embedder = self.embedding.model
        counter = getattr(embedder, "count_text_tokens", None) if embedder is not None else None
        query = cursor_queries(prefix, suffix, retrieval, counter)
        return self.search(
            query.lexical,
            k,
            cursor_region(path, prefix, retrieval),
            dense_query=query.dense,
            names=query.names,
            enclosing=query.enclosing,
        )

    def notify_file_changed(self, path: str | Path) -> None:
        """A hint (e.g. didSave): re-check this path soon, debounced like watchdog events."""
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                rel = candidate.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return
        else:
            rel = candidate.as_posix()
        self.debouncer.add(rel)

    def reindex(self) -> None:
        """Re-check every file against the disk (stat first, so cheap when little changed)."""
        self._request_rescan()

    def is_idle(self) -> bool:
        lexical_idle = (
            self._lexical_ready.is_set()
            and not self._rescan.is_set()
            and self._work.empty()
            and self.debouncer.pending() == 0
            and not self._worker_busy.is_set()
        )
        if not lexical_idle:
            return False
        if not self.dense or self.embedder_error is not None or not self._threads:
            return True
        return not self._dense_busy.is_set() and not self._dense_work_left()

    def _dense_work_left(self) -> bool:
        """Chunks waiting for a vector, or vectors of gone chunks waiting for deletion."""
        return bool(self.store.dense_pending_count() or self.store.dense_deleted_count())

    def wait_lexical(self, timeout: float) -> bool:
        return self._lexical_ready.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no work is pending anywhere (twice in a row, to close small races)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            if self.is_idle():
                streak += 1
                if streak >= 2:
                    return True
            else:
                streak = 0
            time.sleep(0.02)
        return False

    def stats(self) -> dict[str, Any]:
        stats = self.store.stats()
        stats.update(
            {
                "workspace": str(self.root),
                "phase": self.phase,
                "dense_enabled": self.dense,
                "embedder_error": self.embedder_error,
                "embedder_gpu_layers": getattr(self.embedding.model, "gpu_layers", None),
                "embedder_gpu_fallback": getattr(self.embedding.model, "gpu_fallback", None),
                "last_errors": list(self.indexer.errors[-5:]),
                "root_missing": self.watcher.root_missing,
                "watching": self.watcher.watching,
                "embedded": self.filler.embedded,
                "shared_index": self.shared.status() if self.shared is not None else None,
                "embed_seconds": round(self.filler.embed_seconds, 3),
            }
        )
        return stats
