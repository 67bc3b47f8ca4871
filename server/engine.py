"""The completion engine: one llama.cpp model, loaded in the background, serving FIM completions.

Why it looks the way it does:
- llama.cpp contexts are not thread-safe, so one generation runs at a time (`_lock`); a newer
  `complete()` sets the cancel event of the one in flight, and generation checks it between
  tokens (decoding is a token generator, so stopping is just not asking for the next).
- The KV cache of the longest common token prefix with the previous prompt is kept
  (`greedy_tokens`, or `Llama.generate` when sampling with a temperature). Prompts put the
  retrieved context first in a stable order and (RepoTune format) the suffix before the
  prefix, so typing re-evaluates only the last few tokens; `reused_tokens` reports how many.
- Loading never happens on the caller's thread (`start_loading()`); until the model is ready
  `complete()` returns None, and a load failure becomes `load_error` (a ModelError message),
  never an exception out of a worker thread.
- An LRU cache keyed by the text around the cursor answers repeats and "typing through" a
  suggestion (the typed characters match the start of a cached completion).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from repotune.server.ask_grounding import (
    ABSTAIN,
    contradicting_definition,
    grounded_opening,
    unsupported_name,
)
from repotune.server.config import Settings
from repotune.server.gpu import (
    block_count,
    load_with_fallback,
    offloaded_layers,
    requested_layers,
)
from repotune.server.models import (
    ModelError,
    adapter_reference,
    resolve_adapter,
    resolve_generator,
)
from repotune.server.postprocess import decide_multiline, postprocess, truncate
from repotune.server.prompts import (
    PREFIX_QUANTUM,
    BuiltPrompt,
    CachedTokenCounter,
    ContextSnippet,
    PromptFormat,
    build_ask_document,
    build_ask_messages,
    build_fim_prompt,
    clip_to_tokens,
    detect_format,
    get_format,
)

log = logging.getLogger(__name__)

# Room kept free in the context window for generated tokens and format markers.
_MARKER_SLACK = 64
# How much text around the cursor keys the result cache.
CACHE_PREFIX_CHARS = 1500
CACHE_SUFFIX_CHARS = 500
# How many recent entries a "typing through" lookup scans.
TYPE_THROUGH_SCAN = 32


@dataclass(frozen=True)
class CompletionRequest:
    """One cursor: the file's text before and after it, plus retrieved snippets."""

    path: str
    language: str | None
    prefix: str
    suffix: str
    context: Sequence[ContextSnippet] = ()
    repo_name: str | None = None


@dataclass
class CompletionResult:
    """A completion and where its time went.

    timings (ms): tokenize (prompt building + tokenizing), prompt_eval (until the first token),
    generate (the rest of decoding), postprocess, total; the caller adds retrieval.
    """

    text: str
    multiline: bool
    timings: dict[str, float]
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    cached: bool
    format: str
    stop_reason: str = ""
    prompt: BuiltPrompt | None = field(default=None, repr=False)
    drafted_tokens: int = 0  # prompt-lookup draft tokens proposed
    accepted_tokens: int = 0  # ... and accepted by the model


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class _CacheEntry:
    path: str
    prefix_tail: str
    suffix_head: str
    text: str
    multiline: bool
    format: str


class CompletionCache:
    """LRU of recent completions keyed by (path, text before and after the cursor)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str], _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(path: str, prefix: str, suffix: str) -> tuple[str, str, str]:
        return (path, prefix[-CACHE_PREFIX_CHARS:], suffix[:CACHE_SUFFIX_CHARS])

    def put(self, path: str, prefix: str, suffix: str, result: CompletionResult) -> None:
        if self.size <= 0:
            return
        key = self.key(path, prefix, suffix)
        entry = _CacheEntry(key[0], key[1], key[2], result.text, result.multiline, result.format)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get(self, path: str, prefix: str, suffix: str) -> _CacheEntry | None:
        """An exact hit, or the rest of a cached completion the user is typing through."""
        key = self.key(path, prefix, suffix)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            for candidate in list(reversed(self._entries.values()))[:TYPE_THROUGH_SCAN]:
                if candidate.path != path or candidate.suffix_head != key[2]:
                    continue
                for typed in range(1, len(candidate.text)):
                    if not prefix.endswith(candidate.text[:typed]):
                        continue
                    tail = candidate.prefix_tail[-CACHE_PREFIX_CHARS:]
                    if not prefix.endswith(tail, 0, len(prefix) - typed):
                        continue
                    rest = candidate.text[typed:]
                    if not rest.strip():
                        continue
                    if not candidate.multiline and "\n" in rest:
                        continue
                    self.hits += 1
                    return replace(candidate, text=rest)
            self.misses += 1
            return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------- loading


def _cpu_has_amx() -> bool:
    """llama.cpp's AMX weight buffers crashed (SIGSEGV in ggml_backend_amx_mul_mat) on the
    Gemma 3 GGUF on an AMX CPU here, so extra CPU buffer types are off where AMX is present."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "amx_int8" in line.split() or "amx_tile" in line.split()
    except OSError:
        return False
    return False


_LOAD_LOCK = threading.RLock()


@contextlib.contextmanager
def llama_extra_buffers(use_extra_bufts: bool) -> Iterator[None]:
    """Every Llama() of the process is built inside this, one at a time.

    Llama() has no argument for llama.cpp's `use_extra_bufts`, so its defaults are wrapped
    meanwhile. And llama-cpp-python's verbose=False silences a load by pointing fds 1 and 2
    (and sys.stdout/stderr) at /dev/null and back: two loads in two threads (the embedder's and
    the generator's, the dataset's tokenizer) interleaved those swaps and left them on /dev/null
    for good, which silenced every later log line and the CLI's JSON result."""
    import llama_cpp.llama_cpp as native

    with _LOAD_LOCK:
        if use_extra_bufts:
            yield
            return
        original = native.llama_model_default_params

        def patched() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = patched  # type: ignore[assignment]
        try:
            yield
        finally:
            native.llama_model_default_params = original  # type: ignore[assignment]


def default_threads() -> int:
    """All physical cores. llama.cpp's OpenMP threads spin at barriers, so a thread too many used
    to cost far more than one too few under load (2 threads: 130-800 ms/token on this 2-core
    machine); with the short spin set in `repotune/__init__.py`, 2 threads decode at 25 ms/token
    idle (1 thread: 42) and 53 ms/token with the other core busy, and evaluate prompts twice as
    fast (620 vs 340 tokens/s), so the cold first completion on a line is much shorter."""
    from repotune.server.embeddings import physical_cores

    return physical_cores()


# Characters around the cursor that the stop rules and post-processing see (they look at the
# cursor's line and a few dozen lines around it).
POSTPROCESS_WINDOW = 64 * 1024


# Tokens kept free for a chat template's own markers around a question.
_ASK_SLACK = 64
# A question keeps at least this many tokens, however many the snippets take.
_MIN_QUESTION_TOKENS = 64


class PromptCancelled(Exception):
    """The request was cancelled while its prompt was being packed."""


@dataclass
class _Loaded:
    llm: Any
    format: PromptFormat
    info: dict[str, Any]
    counter: CachedTokenCounter | None = None

    def __post_init__(self) -> None:
        if self.counter is None:
            llm = self.llm
            self.counter = CachedTokenCounter(
                lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            )


def load_model(settings: Settings) -> _Loaded:
    """Resolve and load the generator (and adapter). Raises ModelError with a user message."""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as exc:
        raise ModelError(f"llama-cpp-python is not installed ({exc})") from None

    model = settings.model
    resolved = resolve_generator(model.generator)
    adapter_path: Path | None = None
    adapter_ref = adapter_reference(model.adapter, model.generator)
    if adapter_ref:
        adapter_path = resolve_adapter(adapter_ref).path
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    threads = model.threads or default_threads()
    extra_bufts = model.cpu_extra_buffers
    if extra_bufts is None:
        extra_bufts = gpu or not _cpu_has_amx()
    started = time.perf_counter()

    def build(n_gpu_layers: int) -> Any:
        with llama_extra_buffers(extra_bufts):
            return Llama(
                model_path=str(resolved.path),
                n_ctx=model.context_length,
                n_batch=min(512, model.context_length),
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                lora_path=str(adapter_path) if adapter_path else None,
                lora_scale=model.adapter_scale,
                swa_full=True,  # sliding-window models (Gemma 3) keep prefix reuse possible
                verbose=False,
            )

    try:
        llm, gpu_layers, gpu_fallback = load_with_fallback(
            build, requested_layers(model.gpu_layers, gpu), "generator"
        )
    except (ValueError, RuntimeError, OSError) as exc:
        what = f"generator {resolved.path}"
        if adapter_path:
            what += f" with adapter {adapter_path}"
        raise ModelError(f"{what}: llama.cpp could not load it ({exc})") from None
    metadata = {str(k): str(v) for k, v in llm.metadata.items()}
    if "tokenizer.chat_template" not in metadata and metadata.get(
        "general.architecture", ""
    ).startswith("gemma"):
        llm.chat_format = "gemma"  # llama-cpp-python would otherwise fall back to llama-2

    def has_token(text: str) -> bool:
        try:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        except RuntimeError:
            return False
        return len(tokens) == 1

    if model.prompt_format == "auto":
        fmt = get_format(detect_format(metadata, has_token))
    else:
        fmt = get_format(model.prompt_format)
    info = {
        "model": str(resolved.path),
        "model_ref": model.generator,
        "model_name": metadata.get("general.name", resolved.path.name),
        "architecture": metadata.get("general.architecture", ""),
        "adapter": str(adapter_path) if adapter_path else None,
        "adapter_scale": model.adapter_scale if adapter_path else None,
        "format": fmt.name,
        "format_forced": model.prompt_format != "auto",
        "gpu_offload": gpu,
        "gpu_layers": offloaded_layers(gpu_layers, block_count(metadata)) if gpu_layers else 0,
        "gpu_fallback": gpu_fallback,
        "threads": threads,
        "context_length": model.context_length,
        "cpu_extra_buffers": extra_bufts,
        "chat_format": llm.chat_format,
        "chat_template": "tokenizer.chat_template" in metadata,
        "load_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return _Loaded(llm=llm, format=fmt, info=info)


# --------------------------------------------------------------------------- decoding


def common_prefix(llm: Any, tokens: Sequence[int]) -> int:
    """How many leading tokens of `tokens` the context already holds (at most all but one)."""
    import numpy as np

    previous = np.asarray(llm.input_ids[: llm.n_tokens])
    common = min(len(previous), len(tokens))
    if common:
        mismatch = np.nonzero(previous[:common] != np.asarray(tokens[:common]))[0]
        common = int(mismatch[0]) if len(mismatch) else common
    return max(0, min(common, len(tokens) - 1))


def lookup_draft(
    history: Sequence[int], max_ngram: int = 3, min_ngram: int = 2, size: int = 6
) -> list[int]:
    """Prompt-lookup drafting: find the latest earlier occurrence of the last n tokens and
    propose what followed it (code repeats itself: names, argument lists, whole lines)."""
    import numpy as np

    ids = np.asarray(history)
    for n in range(max_ngram, min_ngram - 1, -1):
        if len(ids) <= n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], n)
        matches = np.nonzero((windows == ids[-n:]).all(axis=1))[0]
        if len(matches):
            start = int(matches[-1]) + n
            return [int(t) for t in ids[start : start + size]]
    return []


def _argmax(llm: Any, index: int) -> int:
    import numpy as np

    pointer = llm._ctx.get_logits_ith(index)
    return int(np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).argmax())


def greedy_tokens(
    llm: Any, tokens: Sequence[int], lookup: bool, counters: dict[str, int]
) -> Generator[int, None, None]:
    """Greedy decoding with llama.cpp's KV cache reused for the common prefix, and optional
    prompt-lookup drafts verified in one batch.

    llama-cpp-python's own LlamaPromptLookupDecoding needs logits_all=True, which computes the
    262k-way output layer for every prompt token of Gemma 3 (cold prompts 3.6x slower here), so
    drafts are verified here with logits requested only for the draft positions.
    Stopping is just not asking for the next token; the context stays consistent either way.
    """
    keep = common_prefix(llm, tokens)
    if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        keep = 0
    llm.n_tokens = keep
    counters["reused"] = keep
    llm.eval(list(tokens[keep:]))
    token = _argmax(llm, -1)
    history = list(tokens)
    limit = llm.n_ctx() - 1
    while True:
        yield token
        history.append(token)
        draft = lookup_draft(history) if lookup else []
        batch = [token, *draft]
        n_past = llm.n_tokens
        if n_past + len(batch) >= limit:
            return
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=bool(draft))
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        if not draft:
            token = _argmax(llm, -1)
            continue
        counters["drafted"] += len(draft)
        accepted = 0
        token = -1
        for position, proposed in enumerate(draft):
            predicted = _argmax(llm, position)
            if predicted != proposed:
                token = predicted
                break
            accepted += 1
        if token < 0:
            token = _argmax(llm, len(draft))
        counters["accepted"] += accepted
        keep = n_past + 1 + accepted
        if keep < llm.n_tokens:
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        for proposed in draft[:accepted]:
            yield proposed
            history.append(proposed)


# --------------------------------------------------------------------------- engine


class CompletionEngine:
    """Owns the generator model; thread-safe; see the module docstring for the contract."""

    def __init__(
        self, settings: Settings, loader: Callable[[Settings], _Loaded] = load_model
    ) -> None:
        self._settings = settings
        self._loader = loader
        self._lock = threading.Lock()  # the llama.cpp context
        self._state = threading.Lock()  # the fields below
        self._loaded: _Loaded | None = None
        self._load_error: str | None = None
        self._load_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._generation = 0  # bumped by reload(); a stale load thread discards its model
        self._latest_cancel: threading.Event | None = None
        self._closed = False
        self.cache = CompletionCache(settings.completion.cache_size)
        # Why the last complete() ended as it did ("end of line", "cancelled", ...), for the CLI.
        self.last_reason = ""
        # Timings and token counts of the last generation, kept even when it produced nothing.
        self.last_stats: dict[str, Any] = {}
        self._last_context: tuple[tuple[str, int], tuple[ContextSnippet, ...]] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._loaded is not None

    @property
    def load_error(self) -> str | None:
        return self._load_error

    @property
    def format(self) -> PromptFormat | None:
        loaded = self._loaded
        return loaded.format if loaded else None

    def start_loading(self) -> None:
        """Load the model on a background thread (once); returns at once."""
        with self._state:
            if self._closed or self._load_thread is not None:
                return
            self._load_error = None
            generation = self._generation
            settings = self._settings
            thread = threading.Thread(
                target=self._load, args=(generation, settings), name="repotune-model", daemon=True
            )
            self._load_thread = thread
        thread.start()

    def _load(self, generation: int, settings: Settings) -> None:
        try:
            loaded = self._loader(settings)
        except ModelError as exc:
            error: str | None = str(exc)
            loaded = None
        except Exception as exc:  # never let a load failure escape the thread
            error = f"generator: unexpected error while loading ({type(exc).__name__}: {exc})"
            loaded = None
        else:
            error = None
        with self._state:
            if generation != self._generation or self._closed:
                if loaded is not None:
                    loaded.llm.close()
                return
            self._loaded = loaded
            self._load_error = error
            if error:
                log.error("%s", error)
            else:
                log.info("generator loaded: %s", loaded.info if loaded else None)
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading finished (successfully or not); True when a model is ready."""
        self.start_loading()
        self._ready.wait(timeout)
        return self.ready

    def reload(self, settings: Settings) -> None:
        """Apply new settings. Model settings (model, adapter, format...) reload the model in
        the background; completion settings alone apply at once (the result cache is cleared).
        Call it for every settings change; it never waits for a generation in flight (the old
        model is closed in the background once that generation has let go of it)."""
        self.cancel_inflight()
        with self._state:
            if settings.model == self._settings.model and self._loaded is not None:
                self._settings = settings
                self.cache = CompletionCache(settings.completion.cache_size)
                self._last_context = None
                return
            self._generation += 1
            old = self._loaded
            self._loaded = None
            self._settings = settings
            self._load_thread = None
            self._load_error = None
            self._last_context = None
            self._ready.clear()
            self.cache = CompletionCache(settings.completion.cache_size)
        if old is not None:
            threading.Thread(
                target=self._retire, args=(old,), name="repotune-model-retire", daemon=True
            ).start()
        self.start_loading()

    def _retire(self, old: _Loaded) -> None:
        with self._lock:  # a generation still using the old model finishes first
            old.llm.close()

    def close(self) -> None:
        self.cancel_inflight()
        with self._lock, self._state:
            self._closed = True
            self._generation += 1
            old, self._loaded = self._loaded, None
        if old is not None:
            old.llm.close()

    def status(self) -> dict[str, Any]:
        loaded = self._loaded
        state = "ready" if loaded else ("error" if self._load_error else "loading")
        if self._load_thread is None and not loaded and not self._load_error:
            state = "not started"
        info: dict[str, Any] = {
            "state": state,
            "loaded": loaded is not None,
            "load_error": self._load_error,
            "model_ref": self._settings.model.generator,
            "adapter_ref": self._settings.model.adapter,
            "cache_entries": len(self.cache._entries),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
        }
        if loaded:
            info.update(loaded.info)
        info["prompt_lookup"] = self._settings.completion.prompt_lookup
        return info

    def cancel_inflight(self) -> None:
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()

    # ------------------------------------------------------------------ helpers

    def count_tokens(self, text: str) -> int:
        loaded = self._loaded
        if loaded is None:
            raise ModelError("the generator is not loaded yet")
        return self._count(loaded, text)

    @staticmethod
    def _count(loaded: _Loaded, text: str) -> int:
        assert loaded.counter is not None
        return loaded.counter(text)

    def _budget(self, multiline: bool) -> tuple[int, int, int]:
        """The settings' split, scaled down to fit the context window if need be."""
        comp = self._settings.completion
        room = self._settings.model.context_length - _MARKER_SLACK
        room -= comp.max_tokens_block if multiline else comp.max_tokens_line
        parts = (comp.context_tokens, comp.prefix_tokens, comp.suffix_tokens)
        total = sum(parts)
        if total <= room:
            return parts
        scale = max(room, 16) / total
        return (int(parts[0] * scale), max(16, int(parts[1] * scale)), int(parts[2] * scale))

    def build_prompt(
        self,
        request: CompletionRequest,
        multiline: bool = False,
        cancel: threading.Event | None = None,
    ) -> BuiltPrompt:
        """The request's prompt; raises PromptCancelled as soon as `cancel` is set (every
        token count checks it, so a cancelled request stops during packing too)."""
        loaded = self._loaded
        if loaded is None:
            raise ModelError("the generator is not loaded yet")

        def count(text: str) -> int:
            if cancel is not None and cancel.is_set():
                raise PromptCancelled
            return self._count(loaded, text)

        return build_fim_prompt(
            loaded.format,
            path=request.path,
            prefix=request.prefix,
            suffix=request.suffix,
            context=request.context,
            budget=self._budget(multiline),
            count_tokens=count,
            repo_name=request.repo_name,
            prefix_quantum=PREFIX_QUANTUM,
        )

    @staticmethod
    def _tokenize(loaded: _Loaded, prompt: BuiltPrompt) -> list[int]:
        llm = loaded.llm
        tokens: list[int] = []
        add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
        if add_bos and llm.token_bos() >= 0:
            tokens.append(llm.token_bos())
        for segment in prompt.segments:
            special = segment.marker and prompt.special_markers
            piece = llm.tokenize(segment.text.encode("utf-8"), add_bos=False, special=special)
            if special and len(piece) != 1:
                # Code Llama's markers are stored as "▁<PRE>" in its vocabulary.
                alt = llm.tokenize(("▁" + segment.text).encode(), add_bos=False, special=True)
                if len(alt) == 1:
                    piece = alt
            tokens.extend(piece)
        return tokens

    def wants_context(self, path: str, prefix: str) -> bool:
        """False while the cursor stays near the request whose snippets are kept (see
        `_sticky_context`): callers skip retrieval then, which costs more than a warm
        generation on a small CPU."""
        return not self._context_still_near(path, prefix.count("\n"))

    def _context_still_near(self, path: str, line: int) -> bool:
        completion = self._settings.completion
        last = self._last_context
        if not completion.sticky_context or last is None:
            return False
        (last_path, last_line), _ = last
        return last_path == path and abs(line - last_line) <= completion.sticky_context_lines

    def _sticky_context(self, request: CompletionRequest) -> CompletionRequest:
        """While the cursor stays within a few lines of one file, keep the snippets of the
        request that retrieved them: retrieval results shift with every keystroke and line,
        and the context block comes first in the prompt, so a new one makes llama.cpp
        re-evaluate the whole prompt (~1,100 tokens, 2 s here) instead of the last few tokens."""
        line = request.prefix.count("\n")
        last = self._last_context
        if last is not None and self._context_still_near(request.path, line):
            return replace(request, context=last[1])
        self._last_context = ((request.path, line), tuple(request.context))
        return request

    def _acquire(self, cancel: threading.Event) -> bool:
        while not self._lock.acquire(timeout=0.02):
            if cancel.is_set() or self._closed:
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
            self.last_reason = self._load_error or "model not loaded yet"
            return None
        multiline = decide_multiline(
            request.prefix[-POSTPROCESS_WINDOW:],
            request.suffix[:POSTPROCESS_WINDOW],
            request.language,
        )
        hit = self.cache.get(request.path, request.prefix, request.suffix)
        if hit is not None:
            self.last_reason = "cache"
            total = (time.perf_counter() - started) * 1000
            return CompletionResult(
                text=hit.text,
                multiline=hit.multiline,
                timings={"tokenize": 0.0, "prompt_eval": 0.0, "generate": 0.0, "total": total},
                prompt_tokens=0,
                reused_tokens=0,
                generated_tokens=0,
                cached=True,
                format=hit.format,
                stop_reason="cache",
            )
        cancel = cancel or threading.Event()
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()
            self._latest_cancel = cancel
        if not self._acquire(cancel):
            self.last_reason = "cancelled"
            return None
        try:
            loaded = self._loaded
            if loaded is None:
                self.last_reason = "model not loaded"
                return None
            result = self._generate(loaded, request, multiline, cancel, started)
        finally:
            self._lock.release()
            with self._state:
                if self._latest_cancel is cancel:
                    self._latest_cancel = None
        if result is not None and result.text:
            self.cache.put(request.path, request.prefix, request.suffix, result)
        return result

    def _generate(
        self,
        loaded: _Loaded,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        started: float,
    ) -> CompletionResult | None:

        llm = loaded.llm
        comp = self._settings.completion
        request = self._sticky_context(request)
        try:
            prompt = self.build_prompt(request, multiline, cancel)
        except PromptCancelled:
            self.last_reason = "cancelled"
            return None
        tokens = self._tokenize(loaded, prompt)
        if cancel.is_set():
            self.last_reason = "cancelled"
            return None
        limit = self._settings.model.context_length - 8
        max_tokens = comp.max_tokens_block if multiline else comp.max_tokens_line
        if len(tokens) + max_tokens > limit:  # the budget should prevent this; keep the end
            keep = max(1, limit - max_tokens)
            tokens = tokens[:1] + tokens[len(tokens) - keep + 1 :]
        tokenized = time.perf_counter()
        # Stop rules look at nearby lines only: per token, a huge buffer must cost nothing more.
        near_prefix = request.prefix[-POSTPROCESS_WINDOW:]
        near_suffix = request.suffix[:POSTPROCESS_WINDOW]

        stop = prompt.stop
        generated: list[int] = []
        text = ""
        reason = "token cap"
        first_token_at: float | None = None
        # The time cap bounds decoding: a slow cold prompt must not leave a one-token stub.
        deadline = float("inf")
        vocab = llm._model.vocab
        import llama_cpp

        counters = {"reused": 0, "drafted": 0, "accepted": 0}
        stream: Generator[int, None, None]
        if comp.temperature == 0:
            stream = greedy_tokens(llm, tokens, comp.prompt_lookup, counters)
        else:
            counters["reused"] = common_prefix(llm, tokens)
            stream = llm.generate(
                tokens,
                temp=comp.temperature,
                top_k=40,
                top_p=0.95,
                min_p=0.05,
                repeat_penalty=1.0,
                reset=True,
            )
        try:
            for token in stream:
                now = time.perf_counter()
                if first_token_at is None:
                    first_token_at = now
                    deadline = now + comp.time_cap_ms / 1000
                if cancel.is_set():
                    self.last_reason = "cancelled"
                    return None
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "end of generation"
                    break
                generated.append(token)
                text = llm.detokenize(generated).decode("utf-8", errors="ignore")
                cut = truncate(
                    text,
                    prefix=near_prefix,
                    suffix=near_suffix,
                    multiline=multiline,
                    stop=stop,
                )
                if cut.done:
                    reason = cut.reason
                    break
                if len(generated) >= max_tokens:
                    reason = "token cap"
                    break
                if now >= deadline:
                    reason = "time cap"
                    break
        finally:
            stream.close()
        generated_at = time.perf_counter()
        if cancel.is_set():
            self.last_reason = "cancelled"
            return None
        self.last_reason = reason
        if multiline and reason in ("time cap", "token cap") and "\n" in text.strip("\n"):
            text = text[: text.rstrip("\n").rfind("\n")]  # a block keeps whole lines only
        final = postprocess(
            text,
            prefix=near_prefix,
            suffix=near_suffix,
            multiline=multiline,
            stop=stop,
            language=request.language,
        )
        done = time.perf_counter()
        first = first_token_at or generated_at
        timings = {
            "tokenize": (tokenized - started) * 1000,
            "prompt_eval": (first - tokenized) * 1000,
            "generate": (generated_at - first) * 1000,
            "postprocess": (done - generated_at) * 1000,
            "total": (done - started) * 1000,
        }
        self.last_stats = {
            "timings": timings,
            "prompt_tokens": len(tokens),
            "reused_tokens": counters["reused"],
            "generated_tokens": len(generated),
            "drafted_tokens": counters["drafted"],
            "accepted_tokens": counters["accepted"],
        }
        if final is None:
            self.last_reason = f"nothing left after post-processing (stop: {reason})"
            return None
        return CompletionResult(
            text=final,
            multiline=multiline,
            timings=timings,
            prompt_tokens=len(tokens),
            reused_tokens=counters["reused"],
            generated_tokens=len(generated),
            cached=False,
            format=prompt.format,
            stop_reason=reason,
            prompt=prompt,
            drafted_tokens=counters["drafted"],
            accepted_tokens=counters["accepted"],
        )

    # ------------------------------------------------------------------ questions

    def _ask_document(
        self,
        llm: Any,
        question: str,
        snippets: Sequence[Any],
        max_tokens: int,
        cancel: threading.Event,
        deadline: float,
    ) -> str:
        """Base models (no chat template) continue a Q&A document instead of a chat turn."""
        chars = self._settings.ask.context_chars
        prompt, stops = build_ask_document(question, snippets, max_snippet_chars=chars)
        answer = self._continue_document(llm, prompt, stops, max_tokens, cancel, deadline)
        denied = contradicting_definition(question, answer, snippets)
        if denied is None or cancel.is_set() or time.monotonic() > deadline:
            return answer
        # The abstention denies a definition the snippets hold: answer from that definition.
        opening = grounded_opening(denied)
        rest = self._continue_document(
            llm, f"{prompt} {opening}", stops, max_tokens, cancel, deadline
        )
        return f"{opening}{'' if rest[:1] in ',.:;' else ' '}{rest}".strip()

    def _continue_document(
        self,
        llm: Any,
        prompt: str,
        stops: Sequence[str],
        max_tokens: int,
        cancel: threading.Event,
        deadline: float,
    ) -> str:
        pieces: list[str] = []
        stream = llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=max(0.0, self._settings.completion.temperature),
            repeat_penalty=1.15,
            stop=list(stops),
            stream=True,
        )
        for chunk in stream:
            if cancel.is_set() or time.monotonic() > deadline:
                break
            pieces.append(chunk["choices"][0].get("text", ""))  # type: ignore[index]
        with contextlib.suppress(Exception):
            stream.close()  # type: ignore[union-attr]
        return "".join(pieces).strip()

    def _fit_question(
        self, loaded: _Loaded, question: str, snippets: Sequence[Any], max_tokens: int
    ) -> str:
        """The question cut to what the context window leaves beside the snippets and the
        answer (a pasted log or file as a question is answered, not refused)."""
        prompt, _ = build_ask_document(
            "", snippets, max_snippet_chars=self._settings.ask.context_chars
        )
        room = self._settings.model.context_length - max_tokens - _ASK_SLACK
        budget = max(_MIN_QUESTION_TOKENS, room - self._count(loaded, prompt))
        return clip_to_tokens(question, budget, lambda text: self._count(loaded, text))

    def ask(
        self,
        question: str,
        snippets: Sequence[Any],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Answer a question about the codebase from `snippets`, with the model's chat template.

        Bounded by `ask.max_tokens` (unless `max_tokens` is given) and `ask.time_cap_ms`.
        Raises ModelError when no model is loaded (the caller reports it); returns the text
        generated so far when cancelled or out of time.
        """
        if not self.ready:
            self.start_loading()
            raise ModelError(self._load_error or "the generator is still loading; try again")
        cancel = cancel or threading.Event()
        bounds = self._settings.ask
        max_tokens = max_tokens or bounds.max_tokens
        deadline = time.monotonic() + bounds.time_cap_ms / 1000.0
        if not self._acquire(cancel):
            return ""
        try:
            loaded = self._loaded
            if loaded is None:
                raise ModelError(self._load_error or "the generator is not loaded")
            question = self._fit_question(loaded, question, snippets, max_tokens)
            messages = build_ask_messages(
                question, snippets, max_snippet_chars=bounds.context_chars
            )
            llm = loaded.llm
            if not loaded.info.get("chat_template"):
                answer = self._ask_document(llm, question, snippets, max_tokens, cancel, deadline)
                return self._grounded(question, answer, snippets)
            if llm.chat_format == "gemma" and messages and messages[0]["role"] == "system":
                # Gemma's template has no system role; its convention is to prepend it.
                system = messages[0]["content"]
                messages = [
                    {"role": "user", "content": f"{system}\n\n{messages[1]['content']}"},
                    *messages[2:],
                ]
            pieces: list[str] = []
            stream = llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=max(0.0, self._settings.completion.temperature),
                stream=True,
            )
            for chunk in stream:
                if cancel.is_set() or time.monotonic() > deadline:
                    break
                delta = chunk["choices"][0].get("delta", {})  # type: ignore[index]
                if delta.get("content"):
                    pieces.append(delta["content"])
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
            return self._grounded(question, "".join(pieces).strip(), snippets)
        finally:
            self._lock.release()

    @staticmethod
    def _grounded(question: str, answer: str, snippets: Sequence[Any]) -> str:
        """An answer about a name no snippet contains is not from the code: abstain instead."""
        missing = unsupported_name(question, answer, snippets)
        return ABSTAIN.format(name=missing) if missing else answer
