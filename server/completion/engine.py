"""The completion engine: one llama.cpp model, loaded in the background, serving FIM completions.

Why it looks the way it does:
- llama.cpp contexts are not thread-safe, so one generation runs at a time (`_lock`); a newer
  `complete()` sets the cancel event of the one in flight, and generation checks it between
  tokens (decoding is a token generator, so stopping is just not asking for the next).
- The KV cache of the longest common token prefix with the previous prompt is kept
  (`greedy_tokens`, or `Llama.generate` when sampling with a temperature). Prompts put the
  retrieved context first in a stable order and (RepoTune format) the suffix before the
  prefix, so typing re-evaluates only the last few tokens; `reused_tokens` reports how many.
- One completion's pipeline (prompt tokens -> decode -> postprocess) is generation.py; the
  engine decides when it runs, and work ahead runs the same one in the background.
- Loading never happens on the caller's thread (`start_loading()`, model_slot.py); until the
  model is ready `complete()` returns None, and a load failure becomes `load_error` (a ModelError
  message), never an exception out of a worker thread.
- An LRU cache keyed by the text around the cursor answers repeats and "typing through" a
  suggestion (the typed characters match the start of a cached completion).
- Work ahead (work_ahead.py): `prefill()` evaluates an edited place's prompt in the background
  before its request arrives; on an empty line the block's first line is returned as soon as it
  is complete and the block finishes in the background, into the result cache. Any completion
  request cancels that work at its next step and keeps what it evaluated.
- The KV caches of the last few files are kept (llm/kv_slots.py), so going back to a file
  re-evaluates only what changed there.
- Quick start (quick_start.py; "auto" by default: on only where the measured prompt speed,
  prompt_speed.py, makes a new place slow): at a new place the first answers come from a
  short prompt while the full one is evaluated in the background.
- Stable context (sticky.py, `completion.stable_context`, on by default): at a new place one of
  whose top two snippets the context block in the KV cache already shows, the first answers
  keep that block; the place's own snippets are evaluated in the background
  (`WorkAhead.refresh_block`) and used once that is done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from repotune.server.ask.answer import answer
from repotune.server.ask.stream import OnText, ignore_text
from repotune.server.completion.cache import CompletionCache
from repotune.server.completion.decode import fit_window, prompt_tokens
from repotune.server.completion.formats import PromptFormat
from repotune.server.completion.generation import Generated, generate
from repotune.server.completion.model import LoadedModel, load_model
from repotune.server.completion.model_slot import ModelSlot
from repotune.server.completion.postprocess import wants_block
from repotune.server.completion.prompt_speed import PromptSpeed
from repotune.server.completion.prompts import BuiltPrompt, PromptCancelled
from repotune.server.completion.quick_start import quick_start_on, wants_quick_start
from repotune.server.completion.repo_ngrams import RepositoryTexts
from repotune.server.completion.repositories import ModelRepositories
from repotune.server.completion.request import CompletionRequest, CompletionResult
from repotune.server.completion.request_prompt import (
    PreparedPrompt,
    answer_tokens,
    build_request_prompt,
)
from repotune.server.completion.sticky import StickyContext
from repotune.server.completion.work_ahead import WorkAhead
from repotune.server.config import Settings
from repotune.server.llm.kv_slots import KvSlots
from repotune.server.models import ModelError

log = logging.getLogger(__name__)

# A request's prompt evaluation is a speed sample only when this long: its time also holds the
# first token's decoding (a 262k-token vocabulary), which would make a short one look slow.
REQUEST_SAMPLE_TOKENS = 256


# --------------------------------------------------------------------------- engine


class CompletionEngine:
    """Owns the generator model; thread-safe; see the module docstring for the contract."""

    def __init__(
        self,
        settings: Settings,
        loader: Callable[[Settings], LoadedModel] = load_model,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """`on_settled` is called (on the loading thread) each time a model load ends."""
        self._settings = settings
        self._lock = threading.Lock()  # the llama.cpp context
        self._model = ModelSlot(loader, self._lock, on_settled)
        self._state = threading.Lock()  # the fields below
        self._latest_cancel: threading.Event | None = None
        self.cache = CompletionCache(settings.completion.cache_size)
        # Why the last complete() ended as it did ("end of line", "cancelled", ...), for the CLI.
        self.last_reason = ""
        # Timings and token counts of the last generation, kept even when it produced nothing.
        self.last_stats: dict[str, Any] = {}
        self._sticky = StickyContext(stable=True)
        self._slots = _kv_slots(settings)
        self.ahead = WorkAhead(self)
        self._repositories = ModelRepositories(self._lock, lambda: self._loaded)
        # The machine's measured prompt speed (kept across reloads: it is the machine's).
        self.prompt_speed = PromptSpeed()
        self._quick_on = False  # what quick_start_on said last ("auto" keeps a margin)

    # ------------------------------------------------------------------ lifecycle

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def ready(self) -> bool:
        return self._model.ready

    @property
    def load_error(self) -> str | None:
        return self._model.load_error

    @property
    def _loaded(self) -> LoadedModel | None:
        return self._model.loaded

    @property
    def format(self) -> PromptFormat | None:
        loaded = self._loaded
        return loaded.format if loaded else None

    def start_loading(self) -> None:
        """Load the model on a background thread (once); returns at once."""
        self._model.start_loading(self._settings)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading finished (successfully or not); True when a model is ready."""
        self.start_loading()
        return self._model.wait_ready(timeout)

    def reload(self, settings: Settings) -> None:
        """Apply new settings. Model settings (model, adapter, format...) reload the model in
        the background; completion settings alone apply at once (the result cache is cleared).
        Call it for every settings change; it never waits for a generation in flight (the old
        model is closed in the background once that generation has let go of it)."""
        self.cancel_inflight()
        with self._state:
            # A model loaded (or on its way) for the same in-process settings is kept.
            same_model = settings.model.in_process() == self._settings.model.in_process() and (
                self._loaded is not None or self._model.loading
            )
            self._settings = settings
            self.cache = CompletionCache(settings.completion.cache_size)
            self._sticky.clear()
            self._slots = _kv_slots(settings)
            if not same_model:
                self.ahead.forget_prefill()
        if not same_model:
            self._model.replace(settings)

    def close(self) -> None:
        self.cancel_inflight()
        self.ahead.worker.close()
        self._repositories.close()
        with self._lock:
            self._model.close()

    def sync_repository(self, source: RepositoryTexts) -> int:
        """ModelRepositories.sync: the repository's n-gram table built now (the evaluation)."""
        return self._repositories.sync(source)

    def status(self) -> dict[str, Any]:
        loaded = self._loaded
        error = self._model.load_error
        state = "ready" if loaded else ("error" if error else "loading")
        if not self._model.started and not loaded and not error:
            state = "not started"
        info: dict[str, Any] = {
            "state": state,
            "loaded": loaded is not None,
            "load_error": error,
            "model_ref": self._settings.model.generator,
            "adapter_ref": self._settings.model.adapter,
            "cache_entries": len(self.cache._entries),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
        }
        if loaded:
            info.update(loaded.info)
        speed = self.prompt_speed.tokens_per_s
        info["prompt_speed"] = {
            "tokens_per_s": None if speed is None else round(speed),
            "quick_start": self._settings.completion.quick_start,
            "quick_start_on": self.quick_start_active(),
        }
        info["prompt_lookup"] = self._settings.completion.prompt_lookup
        info["token_healing"] = self._settings.completion.token_healing
        info["copy_lines"] = self._settings.completion.copy_lines
        info["repository_ngrams"] = {
            "weight": self._settings.completion.repository_ngrams,
            **self._repositories.stats(),
        }
        info["ahead"] = {**self.ahead_stats, "warm_files": self._slots.stats()}
        return info

    def cancel_inflight(self) -> None:
        self.ahead.worker.cancel()
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()

    def forget(self) -> None:
        """Drop the result cache, the kept snippets and every KV cache (a benchmark's arms then
        start alike)."""
        self.cancel_inflight()
        self.ahead.worker.wait_idle(60)
        with self._lock:
            self.cache.clear()
            self._sticky.clear()
            self._slots.clear()
            self.ahead.forget_prefill()
            if self._loaded is not None:
                self._loaded.llm.reset()

    def wait_ahead(self, timeout: float | None = None) -> bool:
        """Block until background work (prefill, a block's rest) is done; for tests and benches."""
        return self.ahead.worker.wait_idle(timeout)

    # ------------------------------------------------------------------ helpers

    def count_tokens(self, text: str) -> int:
        loaded = self._loaded
        if loaded is None:
            raise ModelError("the generator is not loaded yet")
        return loaded.count(text)

    def build_prompt(
        self,
        request: CompletionRequest,
        multiline: bool = False,
        cancel: threading.Event | None = None,
        quick: bool = False,
    ) -> BuiltPrompt:
        """The request's prompt (the short one when `quick`); raises PromptCancelled as soon as
        `cancel` is set."""
        loaded = self._loaded
        if loaded is None:
            raise ModelError("the generator is not loaded yet")
        return build_request_prompt(
            loaded.format, loaded.count, self._settings, request, multiline, cancel, quick
        )

    def prepare_prompt(
        self,
        loaded: LoadedModel,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        quick: bool = False,
        kept: bool = True,
    ) -> PreparedPrompt | None:
        """`request`'s prompt (the short one when `quick`) and its token ids (None when
        cancelled meanwhile); with the kept snippets (sticky.py) unless not `kept`."""
        if kept:
            request = self._kept(request)
        try:
            prompt = self.build_prompt(request, multiline, cancel, quick)
        except PromptCancelled:
            return None
        vocabulary = loaded.vocabulary if self._settings.completion.token_healing else None
        tokens, healing = prompt_tokens(loaded.llm, prompt, vocabulary)
        # Room is left in the context window for the longest answer.
        window = self._settings.model.context_length
        tokens = fit_window(tokens, window, answer_tokens(self._settings, multiline))
        return PreparedPrompt(prompt, tokens, healing)

    def quick_start_active(self) -> bool:
        """Is quick start on now: as set, or ("auto") by the measured prompt speed?"""
        self._quick_on = quick_start_on(
            self._settings.completion, self.prompt_speed.tokens_per_s, self._quick_on
        )
        return self._quick_on

    def quick_now(self, loaded: LoadedModel, tokens: Sequence[int]) -> bool:
        """With quick start on: is the full prompt (`tokens`) too far from ready to wait for?
        Called holding the model lock."""
        if not self.quick_start_active():
            return False
        cached = self._slots.best_start(loaded.llm, tokens)
        return wants_quick_start(self._settings.completion, len(tokens), cached)

    def wants_context(self, path: str, prefix: str) -> bool:
        """False while the cursor stays near the request whose snippets are kept (sticky.py):
        callers skip retrieval then, which costs more than a warm generation on a small CPU."""
        return self._sticky.wants_context(self._settings.completion, path, prefix)

    def _kept(self, request: CompletionRequest) -> CompletionRequest:
        return self._sticky.apply(self._settings.completion, request)

    def _acquire(self, cancel: threading.Event) -> bool:
        while not self._lock.acquire(timeout=0.02):
            if cancel.is_set() or self._model.closed:
                return False
        if cancel.is_set():
            self._lock.release()
            return False
        return True

    # ------------------------------------------------------------------ completion

    def complete(
        self, request: CompletionRequest, cancel: threading.Event | None = None
    ) -> CompletionResult | None:
        """A completion for `request`, or None (not loaded yet, cancelled, nothing good).

        Blocking; run it on a worker thread. A newer call cancels this one between tokens.
        """
        started = time.perf_counter()
        if not self.ready:
            self.start_loading()
            self.last_reason = self._model.load_error or "model not loaded yet"
            return None
        multiline = wants_block(request)
        cancel = cancel or threading.Event()
        hit = self.cache.get(request.path, request.prefix, request.suffix)
        if hit is None and self.ahead.wait_for(request, cancel):
            hit = self.cache.get(request.path, request.prefix, request.suffix)
        if hit is not None:
            self.last_reason = "cache"
            self.ahead.refresh_block(request)
            return hit.as_result((time.perf_counter() - started) * 1000)
        self.ahead.worker.cancel()  # background work stops at its next step; what it did stays
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()
            self._latest_cancel = cancel
        if not self._acquire(cancel):
            self.last_reason = "cancelled"
            return None
        first_line = multiline and self.ahead.first_line_first(request)
        quick = False
        try:
            loaded = self._loaded
            if loaded is None:
                self.last_reason = "model not loaded"
                return None
            prepared = None
            if self.quick_start_active():
                prepared = self.prepare_prompt(loaded, request, multiline, cancel)
                quick = prepared is not None and self.quick_now(loaded, prepared.tokens)
            generated = self._answer(
                loaded,
                request,
                multiline,
                cancel,
                started,
                first_line,
                quick,
                None if quick else prepared,
            )
        finally:
            self._lock.release()
            with self._state:
                if self._latest_cancel is cancel:
                    self._latest_cancel = None
        self.last_reason = generated.reason
        if generated.stats:
            self.last_stats = generated.stats
        result = generated.result
        if result is not None and result.text:
            self.cache.put(request.path, request.prefix, request.suffix, result)
            # A quick first line's block is not finished later: that would evaluate the full
            # prompt in one go, holding the model; it is prefilled a step at a time instead.
            if first_line and generated.reason == "first line" and not quick:
                self.ahead.finish_block_later(request, result.text, generated.tokens)
        if quick and not cancel.is_set():
            self.ahead.stats["quick_answers"] += int(bool(result is not None and result.text))
            self.ahead.prefill(request, full_only=True)
        elif result is not None and not (first_line and generated.reason == "first line"):
            self.ahead.refresh_block(request)  # (after a block's rest: see _finish_block)
        return result

    def prefill(self, request: CompletionRequest) -> bool:
        """Complete `request` in the background before its request arrives (work_ahead.py).
        Returns False when nothing was queued."""
        return self.ahead.prefill(request)

    @property
    def ahead_stats(self) -> dict[str, Any]:
        """Work-ahead counters, with the context blocks kept at new places and adopted later."""
        return {
            **self.ahead.stats,
            "kept_blocks": self._sticky.kept_blocks,
            "adopted_blocks": self._sticky.adopted_blocks,
        }

    def _answer(
        self,
        loaded: LoadedModel,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        started: float,
        first_line: bool,
        quick: bool = False,
        prepared: PreparedPrompt | None = None,
    ) -> Generated:
        """`_generate`, and the whole block when a first line alone was dropped (it repeats the
        code below the cursor) where the block may hold more."""
        generated = self._generate(
            loaded, request, multiline, cancel, started, first_line, quick, prepared=prepared
        )
        if first_line and generated.result is None and generated.reason.startswith("nothing"):
            # The same prompt: a first line is only ever asked of a multi-line one.
            generated = self._generate(
                loaded, request, True, cancel, started, False, quick, prepared=prepared
            )
        return generated

    def _generate(
        self,
        loaded: LoadedModel,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        started: float,
        first_line: bool,
        quick: bool = False,
        forced: Sequence[int] = (),
        prepared: PreparedPrompt | None = None,
    ) -> Generated:
        """One completion (generation.py), its prompt built unless `prepared` already is."""
        if prepared is None:
            prepared = self.prepare_prompt(loaded, request, multiline, cancel, quick)
            if prepared is None:
                return Generated(None, "cancelled", {})
        generated = generate(
            loaded,
            self._settings.completion,
            self._slots,
            request,
            prepared,
            multiline=multiline,
            cancel=cancel,
            started=started,
            first_line=first_line,
            quick=quick,
            forced=forced,
            # The short prompt leaves the full one's prefilled cache saved, not spent.
            on_first_token=_ignore if quick else self.ahead.settle_prefill,
            ngrams=self._repositories.for_request(
                loaded, request, self._settings.completion.repository_ngrams
            ),
        )
        stats = generated.stats
        evaluated = stats["prompt_tokens"] - stats["reused_tokens"] if stats else 0
        if evaluated >= REQUEST_SAMPLE_TOKENS:
            self.prompt_speed.record(evaluated, stats["timings"]["prompt_eval"] / 1000)
        return generated

    def ask(
        self,
        question: str,
        snippets: Sequence[Any],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        on_text: OnText = ignore_text,
    ) -> str:
        """Answer a question about the codebase from `snippets`, with the model's chat template.

        Bounded by `ask.max_tokens` (unless `max_tokens` is given) and `ask.time_cap_ms`;
        `on_text` sees the answer grow.
        Raises ModelError when no model is loaded (the caller reports it); returns the text
        generated so far when cancelled or out of time.
        """
        if not self.ready:
            self.start_loading()
            raise ModelError(self._model.load_error or "the generator is still loading; try again")
        cancel = cancel or threading.Event()
        bounds = self._settings.ask
        max_tokens = max_tokens or bounds.max_tokens
        deadline = time.monotonic() + bounds.time_cap_ms / 1000.0
        if not self._acquire(cancel):
            return ""
        try:
            loaded = self._loaded
            if loaded is None:
                raise ModelError(self._model.load_error or "the generator is not loaded")
            return answer(
                loaded, self._settings, question, snippets, max_tokens, cancel, deadline, on_text
            )
        finally:
            self._lock.release()


def _ignore(reused: int) -> None:
    return None


def _kv_slots(settings: Settings) -> KvSlots:
    """Saved KV caches: the warm files', one more for the prompt that quick start is not using
    (the short one while the full one is live, or the other way round; "auto" may turn quick
    start on), and one for the kept block's prompt while a fresh block is evaluated
    (stable_context)."""
    completion = settings.completion
    quick = completion.quick_start is not False
    return KvSlots(completion.warm_files + int(quick) + int(completion.stable_context))
