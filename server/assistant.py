"""The editor-agnostic core of the server: workspace folders, retrieval, completion, questions.

The LSP layer (lsp/) only converts protocol types to and from the plain values used here, so
everything below can be driven and tested without an editor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repotune.server.ask.focus import CodeInView, in_view_snippets
from repotune.server.ask.from_index import index_answer
from repotune.server.ask.sources import NOTHING_RETRIEVED, Answer, Source, question_sources
from repotune.server.ask.stream import OnText, ignore_text
from repotune.server.completion.context import as_snippets
from repotune.server.completion.request import (
    CompletionRequest,
    redacted_buffer,
)
from repotune.server.completion.trigger import auto_trigger_skip, line_suffix_at
from repotune.server.config import Settings, load_settings, settings_with
from repotune.server.folders import WorkspaceFolders
from repotune.server.index.files import is_secret_document
from repotune.server.index.redact import redact_secrets

if TYPE_CHECKING:
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.completion.remote import EndpointEngine
    from repotune.server.completion.repo_ngrams import RepositoryTexts
    from repotune.server.index.retrieval import RetrievedChunk

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class CompletionOutcome:
    text: str
    multiline: bool
    timings: dict[str, float]
    context: list[RetrievedChunk] = field(default_factory=list)
    cached: bool = False
    quick: bool = False  # from quick start's short prompt


def _language_matches(language: str | None, allowed: list[str]) -> bool:
    return "*" in allowed or (language is not None and language in allowed)


class Assistant:
    """One per server process: owns the engine and one index per workspace folder."""

    def __init__(
        self, editor_overrides: Mapping[str, Any] | None = None, on_event: EventSink | None = None
    ) -> None:
        self._on_event = on_event or (lambda event: None)
        self._lock = threading.RLock()
        # Model and index modules load after `initialize` is answered (it must be instant).
        from repotune.server.llm.embeddings import SharedEmbedders

        self._status_lock = threading.RLock()
        self._embedders = SharedEmbedders()  # one embedder for all folders
        self.folders = WorkspaceFolders(
            self._embedders,
            editor_overrides or {},
            self._on_event,
            self._record_error,
            self._emit_status,
        )
        self.errors: list[str] = []
        self.settings = load_settings(None, editor_overrides or {})
        self._engine: CompletionEngine | EndpointEngine | None = None
        self._state = "starting"
        self.counters = {
            "completions": 0,
            "cancelled": 0,
            "empty": 0,
            "cached": 0,
            "skipped_after_deletion": 0,
            "skipped_mid_line": 0,
            "skipped_secret_file": 0,
            "prefetched": 0,
        }
        # Wall time of the last completion inside the core, so the LSP layer's own cost can be
        # measured from the client side (repotune bench lsp).
        self.last_completion: dict[str, float] = {}

    # ------------------------------------------------------------------ settings

    def update_editor_settings(self, overrides: Mapping[str, Any], source: str) -> None:
        """Apply new editor settings; on error nothing changes and SettingsError is raised.
        Index rules that changed are applied to each folder's index (with a full pass)."""
        with self._lock:
            new_base = settings_with(Settings(), overrides, source)  # validates the layer
            changes = self.folders.replace_overrides(overrides, source)
            old_settings = self.settings
            self.settings = self.folders.primary_settings(default=new_base)
            # The engine applies completion-only changes at once and reloads the model in the
            # background only when model settings changed.
            if self._engine is not None and self.settings != old_settings:
                self._engine = self._engine_for(self.settings)
        for root, (old, new) in changes.items():
            self.folders.apply_index_settings(root, old, new)
        self._emit_status()

    def settings_for_path(self, path: Path) -> Settings:
        root = self.folders.folder_for(path)
        return self.folders.settings_of(root) if root is not None else self.settings

    def _secret_document(self, path: Path, settings: Settings) -> bool:
        """A buffer the index would skip as a secret (.env, keys) is never put into a prompt."""
        root = self.folders.folder_for(path)
        return is_secret_document(path, root, settings.index.secret_patterns)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin loading the model in the background; returns at once."""
        with self._lock:
            if self._engine is None:
                self._engine = self._engine_for(self.settings)
        self._emit_status()

    def _engine_for(self, settings: Settings) -> CompletionEngine | EndpointEngine:
        """The engine the settings ask for (in-process, or `model.endpoint`): the current one
        reloaded, or a new one loading."""
        from repotune.server.completion.engines import engine_for  # after initialize: heavy

        return engine_for(settings, self._engine, on_settled=self._emit_status)

    @property
    def engine(self) -> CompletionEngine | EndpointEngine | None:
        return self._engine

    def add_folder(self, root: Path, watch: bool = True) -> None:
        first_settings = self.folders.add(root, watch)
        if first_settings is not None:  # the first folder's settings choose the model
            with self._lock:
                previous, self.settings = self.settings, first_settings
                if self._engine is not None and first_settings != previous:
                    self._engine = self._engine_for(first_settings)
        elif unused := self.folders.unused_model_settings(root.resolve(), self.settings):
            self._on_event({"type": "log", "level": "warning", "message": unused})
        self._emit_status()

    def remove_folder(self, root: Path) -> None:
        self.folders.remove(root)
        self._emit_status()

    def reindex(self) -> None:
        """Re-read each folder's settings (applying changed rules) and re-check every file."""
        for root in self.folders.roots():
            self.folders.reload_settings(root)
        self.folders.retry_failed()
        for _, index in self.folders.items():
            index.reindex()
        self._emit_status()

    def file_saved(self, path: Path) -> None:
        root = self.folders.folder_for(path)
        if root is not None:
            self.folders.index_for(root).notify_file_changed(path)

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        self.folders.close()
        self._embedders.close()
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------------ requests

    def retrieve(
        self, path: Path, prefix: str, suffix: str, settings: Settings
    ) -> tuple[list[RetrievedChunk], float]:
        """Chunks for the cursor from the file's workspace index, minus the cursor's own window."""
        root = self.folders.folder_for(path)
        if root is None or settings.retrieval.top_k == 0:
            return [], 0.0
        started = time.perf_counter()
        relative = path.resolve().relative_to(root).as_posix()
        try:
            chunks = self.folders.index_for(root).search_cursor(
                relative, prefix, suffix, settings.retrieval.top_k
            )
        except Exception as exc:  # a broken index must not cost the completion
            self._record_error(f"retrieval failed: {exc}")
            chunks = []
        return chunks, (time.perf_counter() - started) * 1000.0

    def complete(
        self,
        path: Path,
        text: str,
        offset: int,
        language: str | None = None,
        cancel: threading.Event | None = None,
        use_context: bool = True,
        automatic: bool = False,
        after_deletion: bool = False,
    ) -> CompletionOutcome | None:
        """A completion at `offset` of `text` (the buffer as typed), or None (disabled, not
        ready, cancelled, nothing good, or an `automatic` request where a suggestion would be
        noise: see completion/trigger.py)."""
        started = time.perf_counter()
        try:
            return self._complete(
                path, text, offset, language, cancel, use_context, automatic, after_deletion
            )
        finally:
            self.last_completion = {"total_ms": (time.perf_counter() - started) * 1000.0}

    def _complete(
        self,
        path: Path,
        text: str,
        offset: int,
        language: str | None,
        cancel: threading.Event | None,
        use_context: bool,
        automatic: bool,
        after_deletion: bool,
    ) -> CompletionOutcome | None:
        settings = self.settings_for_path(path)
        if not settings.completion.enabled:
            return None
        if not _language_matches(language, settings.completion.languages):
            return None
        if self._secret_document(path, settings):
            self.counters["skipped_secret_file"] += 1
            return None
        if automatic:
            line_suffix = line_suffix_at(text, offset)
            reason = auto_trigger_skip(line_suffix, after_deletion, settings.completion)
            if reason is not None:
                self.counters[f"skipped_{reason}"] += 1
                return None
        engine = self._engine
        if engine is None or not engine.ready:
            return None
        built = self._request(engine, path, text, offset, language, settings, use_context)
        request, chunks, retrieval_ms = built
        if cancel is not None and cancel.is_set():
            self.counters["cancelled"] += 1
            return None
        self._set_state("busy")
        try:
            result = engine.complete(request, cancel)
        finally:
            self._set_state("idle")
        self.counters["completions"] += 1
        if cancel is not None and cancel.is_set():
            self.counters["cancelled"] += 1
            return None
        if result is None:
            self.counters["empty"] += 1
            return None
        self.counters["cached"] += int(bool(result.cached))
        timings = dict(result.timings)
        timings["retrieval"] = retrieval_ms
        used = [] if result.quick else chunks  # a quick answer's prompt had no context
        return CompletionOutcome(
            result.text, result.multiline, timings, used, result.cached, result.quick
        )

    def _request(
        self,
        engine: CompletionEngine | EndpointEngine,
        path: Path,
        text: str,
        offset: int,
        language: str | None,
        settings: Settings,
        use_context: bool,
    ) -> tuple[CompletionRequest, list[RetrievedChunk], float]:
        """The engine's request for the cursor: the buffer around it (redacted) and, once per
        line, the retrieved snippets; with the chunks and the retrieval time."""
        prefix, suffix = redacted_buffer(text, offset, settings.completion)
        root = self.folders.folder_for(path)
        relative = path.resolve().relative_to(root).as_posix() if root else path.name
        # The engine keeps one line's snippets while typing on it (KV-cache reuse), so
        # retrieval runs once per line, not once per keystroke.
        retrieve_now = use_context and engine.wants_context(relative, prefix)
        chunks, retrieval_ms = (
            self.retrieve(path, prefix, suffix, settings) if retrieve_now else ([], 0.0)
        )
        request = CompletionRequest(
            path=relative,
            language=language,
            prefix=prefix,
            suffix=suffix,
            context=as_snippets(chunks),
            repo_name=root.name if root else None,
            repository=self._repository_texts(root) if use_context else None,
        )
        return request, chunks, retrieval_ms

    def _repository_texts(self, root: Path | None) -> RepositoryTexts | None:
        """The folder's indexed texts (its store) for the repository's n-grams."""
        if root is None:
            return None
        try:
            return self.folders.index_for(root).store
        except Exception:  # a folder being removed or re-opened: no n-grams this time
            return None

    def prefetch(
        self,
        path: Path,
        text: str,
        offset: int,
        language: str | None = None,
        after_deletion: bool = False,
    ) -> bool:
        """An edit arrived at `offset`: start evaluating that place's prompt in the background so
        the completion request that follows finds it ready. False when nothing was started (the
        request would be declined, or no model is ready)."""
        settings = self.settings_for_path(path)
        completion = settings.completion
        if not (completion.enabled and completion.prefill):
            return False
        if not _language_matches(language, completion.languages):
            return False
        if self._secret_document(path, settings):
            return False
        if auto_trigger_skip(line_suffix_at(text, offset), after_deletion, completion):
            return False
        engine = self._engine
        if engine is None or not engine.ready:
            return False
        request, _, _ = self._request(engine, path, text, offset, language, settings, True)
        started = engine.prefill(request)
        self.counters["prefetched"] += int(started)
        return started

    def search(self, query: str, k: int = 8) -> list[dict[str, Any]]:
        """What retrieval returns for a query, so a user can see why an answer says what it says
        (the question recipe of `ask`: names, the names plain words may mean, quoted sentences)."""
        results: list[dict[str, Any]] = []
        for root, index in self.folders.items():
            for chunk in index.search_question(query, k):
                results.append(
                    {
                        "path": chunk.path,
                        "uri": (root / chunk.path).as_uri(),
                        "start_line": chunk.start_line,
                        "end_line": chunk.end_line,
                        "symbol": chunk.symbol,
                        "kind": chunk.kind,
                        "score": chunk.score,
                        "sources": list(chunk.sources),
                        "text": chunk.text,
                    }
                )
        results.sort(key=lambda item: -item["score"])
        return results[:k]

    def ask(
        self,
        question: str,
        cancel: threading.Event | None = None,
        max_tokens: int | None = None,
        on_text: OnText = ignore_text,
        view: CodeInView | None = None,
    ) -> Answer:
        """Answer from retrieved chunks of every folder; the sources are always listed.
        `on_text` sees the answer grow (a client can show it as it comes). With `view` (the
        selection or cursor the question is asked from), that code comes first (in_view_snippets).
        A secret pasted into the question is redacted like one in a buffer: the model may be an
        endpoint elsewhere."""
        question = redact_secrets(question)
        found = self.answer_from_index(question, view)
        if found is not None:  # read from the index, not generated
            on_text(found.answer)
            return found
        started = time.perf_counter()
        engine = self._engine
        if engine is None or not engine.ready:
            reason = engine.load_error if engine is not None and engine.load_error else "loading"
            raise RuntimeError(f"the model is not ready ({reason})")
        folders = [
            (root, index, self.folders.settings_of(root).retrieval.top_k or 5)
            for root, index in self.folders.items()
        ]
        in_view = self._in_view(view, question) if view is not None else []
        sources = question_sources(folders, question, self.settings.retrieval.top_k, in_view)
        retrieval_ms = (time.perf_counter() - started) * 1000.0
        if not sources:
            # Nothing to answer from: asked anyway, the small model echoed its instructions.
            on_text(NOTHING_RETRIEVED)
            return Answer(NOTHING_RETRIEVED, [], {"retrieval": retrieval_ms, "generate": 0.0})
        generate_started = time.perf_counter()
        self._set_state("busy")
        try:
            text = engine.ask(
                question,
                [source.snippet for source in sources],
                max_tokens=max_tokens,
                cancel=cancel,
                on_text=on_text,
            )
        finally:
            self._set_state("idle")
        timings = {
            "retrieval": retrieval_ms,
            "generate": (time.perf_counter() - generate_started) * 1000.0,
        }
        return Answer(text.strip(), [source.citation for source in sources], timings)

    def answer_from_index(self, question: str, view: CodeInView | None = None) -> Answer | None:
        """The answer to "What calls X?" or "What does X call?" (or "... this function", from
        `view`), read from every folder's index with no model (ask/from_index.py); None for
        any other question."""
        located = self._view_in_folder(view) if view is not None else None
        return index_answer(redact_secrets(question), list(self.folders.items()), view, located)

    def _in_view(self, view: CodeInView, question: str) -> list[Source]:
        """The code in view as the answer's first sources."""
        found = self._view_in_folder(view)
        if found is None:
            return []
        root, relative = found
        return [Source(root, snippet) for snippet in in_view_snippets(view, relative, question)]

    def _view_in_folder(self, view: CodeInView) -> tuple[Path, str] | None:
        """The workspace folder of the file in view and its path there; none for a file outside
        every folder, or one the index skips as a secret (.env, keys)."""
        root = self.folders.folder_for(view.path)
        if root is None or self._secret_document(view.path, self.settings_for_path(view.path)):
            return None
        return root, view.path.resolve().relative_to(root).as_posix()

    # ------------------------------------------------------------------ status and events

    def _record_error(self, message: str) -> None:
        self.errors = [*self.errors[-9:], message]
        self._on_event({"type": "log", "level": "error", "message": message})

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._emit_status()

    def status(self) -> dict[str, Any]:
        engine = self._engine
        engine_status: dict[str, Any] = engine.status() if engine is not None else {}
        folders, totals, indexing = self.folders.status(self.settings)
        load_error = engine_status.get("load_error")
        if load_error:
            state, message = "error", str(load_error)
        elif engine is None:
            state, message = "starting", "starting"
        elif not engine.ready:
            state, message = "loading", "loading the model"
        elif indexing:
            state, message = "indexing", "indexing the workspace"
        else:
            state = "busy" if self._state == "busy" else "idle"
            message = engine_status.get("notice") or "ready"  # e.g. an endpoint that failed
        return {
            "state": state,
            "message": message,
            "model": engine_status.get("model"),
            "adapter": engine_status.get("adapter"),
            "format": engine_status.get("format"),
            "index": totals,
            "folders": folders,
            "errors": [
                *self._standing_errors(),
                *self.errors,
                *([load_error] if load_error else []),
            ],
            "engine": {**engine_status, **self.counters},
            "last_completion": self.last_completion,
            "settings": self.settings.model_dump(mode="json"),
        }

    def _standing_errors(self) -> list[str]:
        """Errors that hold until fixed, even once newer errors have pushed them out of the
        recent list."""
        return [error for error in self.folders.standing_errors() if error not in self.errors]

    def _emit_status(self) -> None:
        try:
            # Threads report in the order they looked: a stale "indexing" must never land last.
            with self._status_lock:
                self._on_event({"type": "status", **self.status()})
        except Exception as exc:  # status must never take a request down
            self._on_event({"type": "log", "level": "error", "message": f"status: {exc}"})
