"""Completions and answers from an OpenAI-compatible endpoint (`model.endpoint`), with the local
model as a fallback.

`EndpointEngine` offers what the assistant uses of `CompletionEngine` (complete, ask, status,
reload, ...), so the assistant only chooses which one to build (engines.py). The prompt is
the in-process one: the same prompt module, format, budgets, stops, caps and post-processing;
what differs:
- the format comes from `model.prompt_format`, or else from `model.endpoint_model`'s name (no
  GGUF metadata over HTTP): a name without a known family (the default model with its adapter,
  a LoRA module name) gets RepoTune's own format;
- tokens are estimated (3 bytes a token, fewer than real code tokens hold), since the served
  model's tokenizer is not at hand: prompts may come out a little shorter than in-process;
- a failed request (refused, timed out, HTTP error) marks the endpoint failed for
  RETRY_AFTER_S; meanwhile requests go to the local model, loaded on the first failure, when
  `model.endpoint_fallback` is on, and get nothing otherwise. The status says which and why.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from repotune.server.ask.answer import answer_by_endpoint
from repotune.server.ask.stream import OnText, ignore_text
from repotune.server.completion.cache import CompletionCache
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.formats import PromptFormat, detect_format, get_format
from repotune.server.completion.postprocess import (
    POSTPROCESS_WINDOW,
    decide_multiline,
    postprocess,
    truncate,
)
from repotune.server.completion.prompts import BuiltPrompt, PromptCancelled
from repotune.server.completion.request import CompletionRequest, CompletionResult
from repotune.server.completion.request_prompt import answer_tokens, build_request_prompt
from repotune.server.completion.sticky import StickyContext
from repotune.server.completion.tokens import CountTokens
from repotune.server.config import ModelSettings, Settings
from repotune.server.llm.endpoint import EndpointClient, EndpointError
from repotune.server.models import ModelError

# After a failure, the endpoint is tried again this much later (a dead one costs nothing meanwhile).
RETRY_AFTER_S = 10.0
# Estimated tokens: code runs ~3.5-4 bytes a token in code models' vocabularies; 3 errs short.
BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def endpoint_format(model: ModelSettings) -> PromptFormat:
    """The served model's format: the one `prompt_format` names, else the one its name shows."""
    if model.prompt_format != "auto":
        return get_format(model.prompt_format)
    name = {"general.name": model.endpoint_model or ""}
    return get_format(detect_format(name, lambda _text: False))


def _endpoint_key(model: ModelSettings) -> tuple[Any, ...]:
    return (model.endpoint, model.endpoint_model, model.endpoint_key_env, model.endpoint_timeout_ms)


class EndpointEngine:
    """Completions from `settings.model.endpoint`; thread-safe like CompletionEngine."""

    def __init__(
        self,
        settings: Settings,
        count_tokens: CountTokens | None = None,
        on_settled: Callable[[], None] | None = None,
        local: CompletionEngine | None = None,
    ) -> None:
        """`local`: an in-process engine already loading or loaded (the one in use before the
        endpoint was set), kept as the fallback instead of loading a second copy."""
        self._settings = settings
        self._on_settled = on_settled  # the local fallback's loads
        # The served model's tokenizer when the caller has it (the benchmark: identical prompts).
        self._count = count_tokens or estimate_tokens
        self._state = threading.Lock()
        self._client = self._new_client(settings)
        # The fallback; it loads on the first failure unless it came loaded.
        self._local = local or CompletionEngine(settings, on_settled=on_settled)
        self._local_started = local is not None
        if local is not None:
            local.reload(settings)  # the same model: completion settings only
        self._latest_cancel: threading.Event | None = None
        self.cache = CompletionCache(settings.completion.cache_size)
        self.last_reason = ""
        self.last_stats: dict[str, Any] = {}
        self._kept_context = StickyContext()
        self._health: dict[str, Any] = {"state": "unknown", "last_error": None, "failed_at": None}
        self._counts = {"requests": 0, "failures": 0, "fallbacks": 0}
        self._latency: dict[str, float] = {}  # the last endpoint request's, for the status

    @staticmethod
    def _new_client(settings: Settings) -> EndpointClient:
        model = settings.model
        assert model.endpoint, "EndpointEngine needs model.endpoint"
        timeout = model.endpoint_timeout_ms / 1000
        return EndpointClient(model.endpoint, model.endpoint_model, model.endpoint_key_env, timeout)

    # ------------------------------------------------------------------ lifecycle

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def ready(self) -> bool:
        return True  # requests go out at once; a dead endpoint is reported per request

    @property
    def load_error(self) -> str | None:
        return None

    @property
    def format(self) -> PromptFormat:
        return endpoint_format(self._settings.model)

    def start_loading(self) -> None:
        """Nothing to load. No probe either: llama_cpp.server ends a stream in flight when
        another request (even GET /models) arrives, so the first completion is the check."""

    def wait_ready(self, timeout: float | None = None) -> bool:
        return True

    def reload(self, settings: Settings) -> None:
        """Apply new settings; a changed endpoint gets a new client and a fresh status."""
        self.cancel_inflight()
        with self._state:
            old = self._settings
            self._settings = settings
            self.cache = CompletionCache(settings.completion.cache_size)
            self._kept_context.clear()
            client = None
            if _endpoint_key(old.model) != _endpoint_key(settings.model):
                client, self._client = self._client, self._new_client(settings)
                self._health = {"state": "unknown", "last_error": None, "failed_at": None}
            if not self._local_started:
                self._local = CompletionEngine(settings, on_settled=self._on_settled)
        if self._local_started:
            self._local.reload(settings)
        if client is not None:
            client.close()

    def close(self) -> None:
        self.cancel_inflight()
        self._client.close()
        self._local.close()

    def release_local(self) -> CompletionEngine | None:
        """Close the endpoint's side and hand over the local fallback if it was started (the
        endpoint setting was removed: that model serves on), else close it too. This engine is
        done afterwards, like after `close`."""
        self.cancel_inflight()
        self._client.close()
        if self._local_started:
            return self._local
        self._local.close()
        return None

    def prefill(self, request: CompletionRequest) -> bool:
        """Work ahead runs in-process only (while the local fallback answers); a request of
        its own to the endpoint would end the one in flight on llama_cpp.server."""
        if self._paused() and self._local.ready:
            return self._local.prefill(request)
        return False

    def forget(self) -> None:
        """Drop the result cache and the kept snippets (and the fallback's caches)."""
        self.cancel_inflight()
        with self._state:
            self.cache.clear()
            self._kept_context.clear()
        if self._local_started:
            self._local.forget()

    def wait_ahead(self, timeout: float | None = None) -> bool:
        return self._local.wait_ahead(timeout) if self._local_started else True

    def cancel_inflight(self) -> None:
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()
        self._local.cancel_inflight()

    # ------------------------------------------------------------------ health and status

    def _failed(self, exc: EndpointError) -> None:
        with self._state:
            self._health = {"state": "failed", "last_error": str(exc), "failed_at": time.time()}
            self._counts["failures"] += 1
        if self._settings.model.endpoint_fallback:
            self._start_local()

    def _start_local(self) -> None:
        with self._state:
            self._local_started = True
        self._local.start_loading()

    def _paused(self) -> bool:
        """True while a recent failure stands: requests skip the endpoint then."""
        failed_at = self._health.get("failed_at")
        return failed_at is not None and time.time() - failed_at < RETRY_AFTER_S

    def notice(self) -> str | None:
        """What a user should know about the endpoint now (None when it works)."""
        health = self._health
        if health["state"] != "failed":
            return None
        said = f"endpoint {self._settings.model.endpoint} failed: {health['last_error']}"
        if not self._settings.model.endpoint_fallback:
            return f"{said}; no completions (model.endpoint_fallback is off)"
        local = self._local
        if local.ready:
            return f"{said}; completing with the local model"
        if local.load_error:
            return f"{said}; the local fallback failed too: {local.load_error}"
        return f"{said}; loading the local model as a fallback"

    def status(self) -> dict[str, Any]:
        model = self._settings.model
        health = self._health
        endpoint = {
            "url": model.endpoint,
            "model": model.endpoint_model,
            "state": health["state"],
            "last_error": health["last_error"],
            "fallback": model.endpoint_fallback,
            "fallback_state": self._local.status()["state"] if self._local_started else None,
            **self._counts,
            **self._latency,
        }
        return {
            "state": "ready",
            "loaded": True,
            "load_error": None,
            "backend": "endpoint",
            "endpoint": endpoint,
            "notice": self.notice(),
            "model": f"{model.endpoint_model or 'default'} at {model.endpoint}",
            "model_ref": model.endpoint_model,
            "adapter": None,
            "adapter_ref": None,
            "format": self.format.name,
            "format_forced": model.prompt_format != "auto",
            "cache_entries": len(self.cache._entries),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
        }

    # ------------------------------------------------------------------ prompts

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def build_prompt(
        self,
        request: CompletionRequest,
        multiline: bool = False,
        cancel: threading.Event | None = None,
    ) -> BuiltPrompt:
        """The request's prompt, packed as in-process with estimated token counts."""
        return build_request_prompt(
            self.format, self._count, self._settings, request, multiline, cancel
        )

    def wants_context(self, path: str, prefix: str) -> bool:
        """False while the cursor stays near the request whose snippets are kept (sticky.py):
        callers skip retrieval then, which costs more than a warm generation on a small CPU."""
        return self._kept_context.wants_context(self._settings.completion, path, prefix)

    # ------------------------------------------------------------------ completion

    def complete(
        self, request: CompletionRequest, cancel: threading.Event | None = None
    ) -> CompletionResult | None:
        """A completion for `request`, or None (cancelled, nothing good, endpoint down)."""
        started = time.perf_counter()
        near_prefix = request.prefix[-POSTPROCESS_WINDOW:]
        near_suffix = request.suffix[:POSTPROCESS_WINDOW]
        multiline = decide_multiline(near_prefix, near_suffix, request.language)
        hit = self.cache.get(request.path, request.prefix, request.suffix)
        if hit is not None:
            self.last_reason = "cache"
            return hit.as_result((time.perf_counter() - started) * 1000)
        if self._paused():
            return self._fallback(request, cancel)
        cancel = cancel or threading.Event()
        with self._state:
            if self._latest_cancel is not None:
                self._latest_cancel.set()  # a newer request wins: the older stream closes
            self._latest_cancel = cancel
        try:
            result = self._remote(request, multiline, cancel, started)
        except EndpointError as exc:
            self._failed(exc)
            return self._fallback(request, cancel)
        finally:
            with self._state:
                if self._latest_cancel is cancel:
                    self._latest_cancel = None
        if result is not None and result.text:
            self.cache.put(request.path, request.prefix, request.suffix, result)
        return result

    def _fallback(
        self, request: CompletionRequest, cancel: threading.Event | None
    ) -> CompletionResult | None:
        """The local model's completion while the endpoint is failed (if fallback is on)."""
        if not self._settings.model.endpoint_fallback:
            self.last_reason = self.notice() or "endpoint failed"
            return None
        self._start_local()
        self._counts["fallbacks"] += 1
        result = self._local.complete(request, cancel)
        self.last_reason = f"local fallback: {self._local.last_reason}"
        self.last_stats = {**self._local.last_stats, "backend": "local fallback"}
        return result

    def _remote(
        self,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        started: float,
    ) -> CompletionResult | None:
        """Prompt -> streamed text (stopped by the same rules as in-process) -> postprocess."""
        comp = self._settings.completion
        request = self._kept_context.apply(self._settings.completion, request)
        try:
            prompt = self.build_prompt(request, multiline, cancel)
        except PromptCancelled:
            self.last_reason = "cancelled"
            return None
        built = time.perf_counter()
        near_prefix = request.prefix[-POSTPROCESS_WINDOW:]
        near_suffix = request.suffix[:POSTPROCESS_WINDOW]
        fields = {
            "prompt": prompt.text,
            "max_tokens": answer_tokens(self._settings, multiline),
            "temperature": comp.temperature,
            "stop": list(prompt.stop),
            # llama_cpp.server penalizes repeats by default (1.1); in-process decoding does not,
            # nor do llama-server and vLLM by default (vLLM ignores this llama.cpp name).
            "repeat_penalty": 1.0,
        }
        self._counts["requests"] += 1
        text, reason, chunks, first = "", "stream ended", 0, None  # ended with no reason given
        with contextlib.closing(self._client.complete(fields).pieces(cancel)) as pieces:
            for piece in pieces:
                now = time.perf_counter()
                first = first or now
                chunks += 1
                text += piece.text
                cut = truncate(
                    text,
                    prefix=near_prefix,
                    suffix=near_suffix,
                    multiline=multiline,
                    stop=prompt.stop,
                    language=request.language,
                )
                if cut.done:
                    reason = cut.reason
                    break
                if piece.finish_reason:
                    stopped = "stop string or end of generation"  # the server's "stop"
                    reason = "token cap" if piece.finish_reason == "length" else stopped
                    break
                if now - first >= comp.time_cap_ms / 1000:
                    reason = "time cap"
                    break
        if cancel.is_set():
            self.last_reason = "cancelled"
            return None
        finished = time.perf_counter()
        with self._state:
            self._health = {"state": "ok", "last_error": None, "failed_at": None}
        self.last_reason = reason
        final = postprocess(
            text,
            prefix=near_prefix,
            suffix=near_suffix,
            multiline=multiline,
            stop=prompt.stop,
            language=request.language,
            stopped_by=reason,
        )
        timings = self._record(prompt, chunks, started, built, first or finished, finished)
        if final is None:
            self.last_reason = f"nothing left after post-processing (stop: {reason})"
            return None
        return CompletionResult(
            text=final,
            multiline=multiline,
            timings=timings,
            prompt_tokens=prompt.tokens,
            reused_tokens=0,
            generated_tokens=chunks,
            cached=False,
            format=prompt.format,
            stop_reason=reason,
            prompt=prompt,
        )

    def _record(
        self,
        prompt: BuiltPrompt,
        chunks: int,
        started: float,
        built: float,
        first: float,
        finished: float,
    ) -> dict[str, float]:
        """Timings (ms) as CompletionEngine reports them; prompt_eval = until the first chunk."""
        done = time.perf_counter()
        timings = {
            "tokenize": (built - started) * 1000,
            "prompt_eval": (first - built) * 1000,
            "generate": (finished - first) * 1000,
            "postprocess": (done - finished) * 1000,
            "total": (done - started) * 1000,
        }
        self.last_stats = {
            "timings": timings,
            "prompt_tokens": prompt.tokens,  # estimated
            "reused_tokens": 0,
            "generated_tokens": chunks,  # streamed chunks: one token each on llama.cpp servers
            "drafted_tokens": 0,
            "accepted_tokens": 0,
        }
        self._latency = {
            "last_latency_ms": round(timings["total"], 1),
            "last_first_chunk_ms": round((first - started) * 1000, 1),
        }
        return timings

    # ------------------------------------------------------------------ questions

    def ask(
        self,
        question: str,
        snippets: Sequence[Any],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        on_text: OnText = ignore_text,
    ) -> str:
        """An answer from POST /chat/completions with the in-process messages; the local model
        answers while the endpoint is failed (fallback on), else ModelError says why.
        `on_text` sees the answer grow."""
        settings = self._settings
        max_tokens = max_tokens or settings.ask.max_tokens
        cancel = cancel or threading.Event()
        if not self._paused():
            try:
                return self._ask_remote(question, snippets, max_tokens, cancel, on_text)
            except EndpointError as exc:
                self._failed(exc)
        if not settings.model.endpoint_fallback:
            raise ModelError(self.notice() or "the endpoint failed")
        self._start_local()
        if not self._local.ready:
            raise ModelError(self.notice() or "the local fallback model is loading")
        return self._local.ask(question, snippets, max_tokens, cancel, on_text)

    def _ask_remote(
        self,
        question: str,
        snippets: Sequence[Any],
        max_tokens: int,
        cancel: threading.Event,
        on_text: OnText,
    ) -> str:
        self._counts["requests"] += 1
        text = answer_by_endpoint(
            self._client,
            self._settings,
            self._count,
            question,
            snippets,
            max_tokens,
            cancel,
            on_text,
        )
        with self._state:
            self._health = {"state": "ok", "last_error": None, "failed_at": None}
        return text
