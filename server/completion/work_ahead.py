"""Work done ahead of the editor's request, for the completion engine.

Editors send didChange before the (debounced) completion request arrives: `prefill()` evaluates
the edited place's prompt in the background, a step at a time, then completes it into the result
cache. On an empty line the block's first line is returned as soon as it is complete and the
block is finished in the background (`finish_block_later`), so accepting the line finds the rest
in the cache. Any completion request cancels this work at its next step and keeps what it
evaluated; the stats say how much prefill work a request kept and how much was thrown away.
With `completion.stable_context`, a place answered from a kept context block gets its own
snippets' prompt evaluated after the answer (`refresh_block`), in a KV slot of its own so that
a keystroke meanwhile goes on from the kept block's cache.
The jobs run on one AheadWorker thread (ahead.py), under the engine's model lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from repotune.server.completion.ahead import AheadWorker
from repotune.server.completion.postprocess import line_prefix_of, wants_block
from repotune.server.completion.request import CompletionRequest
from repotune.server.llm.decoding import common_prefix

if TYPE_CHECKING:
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.completion.model import LoadedModel

# Prompt tokens evaluated per step of a background prefill: a request that arrives meanwhile
# waits at most one step (and keeps what the step evaluated).
PREFILL_STEP = 64

# The longest a request waits for background work that will answer it.
WAIT_LIMIT_S = 120.0

# A fresh context block is evaluated once no request or edit came for this long.
REFRESH_AFTER_IDLE_S = 0.5


def fresh_slot_key(path: str) -> str:
    """The KV slot of a file's prompt with a fresh context block while it is evaluated."""
    return f"{path}\x00fresh"


class WorkAhead:
    """The engine's work ahead: its background thread, what it is doing, and its counters."""

    def __init__(self, engine: CompletionEngine) -> None:
        self._engine = engine
        self.worker = AheadWorker()
        # Prompt tokens evaluated ahead of a request and not yet kept or overwritten by one.
        self._prefill_span: tuple[int, int] | None = None
        # The request whose block finishes in the background, and the first line it was given.
        self._block_for: tuple[CompletionRequest, str] | None = None
        self._speculating: CompletionRequest | None = None  # the request completed ahead
        self.stats: dict[str, Any] = {
            "prefills": 0,
            "prefill_tokens": 0,  # evaluated ahead of a request
            "prefill_used_tokens": 0,  # of those, kept by the next evaluation
            "prefill_cancelled": 0,
            "continuations": 0,  # blocks finished after their first line was returned
            "completed_ahead": 0,  # completions put in the result cache before their request
            "quick_answers": 0,  # answers from quick start's short prompt (ahead or requested)
            "refreshes": 0,  # fresh context blocks evaluated in the background (stable_context)
            "refresh_tokens": 0,  # prompt tokens those evaluations took
        }

    def forget_prefill(self) -> None:
        """The KV cache was dropped: nothing evaluated ahead is left to keep."""
        self._prefill_span = None

    def wait_for(self, request: CompletionRequest, cancel: threading.Event) -> bool:
        """Wait for background work that will answer `request` rather than start over: the same
        request completed ahead (its edit arrived first), or the block being finished for the
        line that `request` continues (the user accepted or typed it). True when it finished."""
        kind = self.worker.busy()
        if kind == "prefill":
            ahead = self._speculating
            if ahead is None or (ahead.path, ahead.prefix, ahead.suffix) != (
                request.path,
                request.prefix,
                request.suffix,
            ):
                return False
        elif kind == "block":
            if self.continues_block(request) != "accepted":
                return False
        else:
            return False  # nothing, or a fresh block's evaluation: it stops at its next step
        # The job is bounded as the request would be (its prompt, then decoding under the time
        # cap), so giving up early would only start the same work over; a stuck job still ends.
        deadline = time.monotonic() + WAIT_LIMIT_S
        cache = self._engine.cache
        while self.worker.busy() == kind:
            if cancel.is_set() or time.monotonic() > deadline:
                return False
            if cache.has(request.path, request.prefix, request.suffix):
                return True  # a quick answer came first; the job goes on with the full prompt
            self.worker.wait_idle(0.02)
        return True

    def finish_block_later(
        self, request: CompletionRequest, first_line: str, tokens: tuple[int, ...]
    ) -> None:
        self._block_for = (request, first_line)
        self.worker.submit("block", partial(self._finish_block, request, tokens))

    def continues_block(self, request: CompletionRequest) -> str | None:
        """How `request` relates to the block being finished: "typing" along its first line
        (the cache answers), the line "accepted" (the rest of the block will), or None."""
        if self._block_for is None:
            return None
        block, first_line = self._block_for
        if request.path != block.path or not request.prefix.startswith(block.prefix):
            return None
        typed = request.prefix[len(block.prefix) :]
        line = first_line.strip("\n")
        if typed.lstrip("\n").startswith(line):
            return "accepted"
        return "typing" if line.startswith(typed.lstrip("\n")) else None

    def first_line_first(self, request: CompletionRequest) -> bool:
        """A block asked for on an empty line: its first line is returned on its own."""
        if not self._engine.settings.completion.first_line_first:
            return False
        return not line_prefix_of(request.prefix).strip()

    def _finish_block(
        self, request: CompletionRequest, first_line: tuple[int, ...], cancel: threading.Event
    ) -> None:
        """The whole block for a request whose first line was returned, into the result cache
        (accepting the line then finds the rest there as "typing through"). Decoding goes on
        after the line's own tokens: generated again, the line could come out differently
        (batched evaluation is not bit-exact), and the rest would fit no line the user saw."""
        with self._holding_model(cancel) as loaded:
            if loaded is None:
                return
            generated = self._engine._generate(
                loaded, request, True, cancel, time.perf_counter(), False, forced=first_line
            )
        if generated.result is not None and generated.result.text and not cancel.is_set():
            self._engine.cache.put(request.path, request.prefix, request.suffix, generated.result)
            self.stats["continuations"] += 1
            self.refresh_block(request)

    def prefill(self, request: CompletionRequest, full_only: bool = False) -> bool:
        """Complete `request` in the background (an edit arrived; its completion request will
        follow after the client's debounce): the prompt a step at a time, then the completion,
        into the result cache. With quick start, a place whose full prompt is far from ready
        gets the short prompt's answer first, then the full prompt's evaluation; `full_only`:
        only that evaluation (a request has just been answered quickly). Returns False when
        nothing was queued."""
        if not self._engine.ready:
            return False
        if full_only:
            return self.worker.submit("prefill", partial(self._prefill, request, True))
        if not self._engine.settings.completion.prefill:
            return False
        if self._engine.cache.get(request.path, request.prefix, request.suffix) is not None:
            return False  # the request will be answered from the cache
        if self.worker.busy() == "block" and self.continues_block(request):
            return False  # typing along the first line: the rest of the block is coming
        self._speculating = request
        return self.worker.submit("prefill", partial(self._prefill, request, False))

    def _prefill(
        self, request: CompletionRequest, full_only: bool, cancel: threading.Event
    ) -> None:
        with self._holding_model(cancel) as loaded:
            if loaded is None:
                return
            multiline = wants_block(request)
            first_line = multiline and self.first_line_first(request)
            prepared = self._engine.prepare_prompt(loaded, request, multiline, cancel)
            if prepared is None:
                return
            if not full_only and self._engine.quick_now(loaded, prepared.tokens):
                self._answer_quickly(loaded, request, multiline, cancel, first_line)
                full_only = True
            if cancel.is_set():
                return
            self._evaluate(loaded.llm, request.path, prepared.tokens, cancel)
            if cancel.is_set() or full_only:
                return
            started = time.perf_counter()
            generated = self._engine._answer(
                loaded, request, multiline, cancel, started, first_line, prepared=prepared
            )
        result = generated.result
        if result is None or not result.text or cancel.is_set():
            return
        self._engine.cache.put(request.path, request.prefix, request.suffix, result)
        self.stats["completed_ahead"] += 1
        if first_line and generated.reason == "first line":
            self.finish_block_later(request, result.text, generated.tokens)
        else:
            self.refresh_block(request)

    def refresh_block(self, request: CompletionRequest) -> bool:
        """With stable_context, after `request` was answered from a kept context block:
        evaluate its prompt with the place's own snippets in the background, and adopt them
        when that is done (requests near the place then use them, the cache already warm).
        Any request or edit stops it at its next step; it is queued again after the next
        answer; other work goes first. Returns False when nothing was queued."""
        fresh = self._engine._sticky.fresh_for(self._engine.settings.completion, request)
        if fresh is None or not self._engine.ready:
            return False
        # The lowest-priority work: it never displaces a prefill or a block's rest.
        return self.worker.offer("refresh", partial(self._refresh, fresh))

    def _refresh(self, request: CompletionRequest, cancel: threading.Event) -> None:
        # Only in a pause: while keystrokes come, each would wait for this job's step.
        if cancel.wait(REFRESH_AFTER_IDLE_S):
            return
        with self._holding_model(cancel) as loaded:
            if loaded is None:
                return
            multiline = wants_block(request)
            prepared = self._engine.prepare_prompt(loaded, request, multiline, cancel, kept=False)
            if prepared is None or cancel.is_set():
                return
            # Its own KV slot: the kept block's cache is saved first, and stays the one to go
            # back to when this evaluation is stopped half-way.
            key = fresh_slot_key(request.path)
            evaluated = self._evaluate(loaded.llm, key, prepared.tokens, cancel, count=False)
            if cancel.is_set() or not self._engine._sticky.adopt(request.context):
                return
            self._engine._slots.rename_owner(request.path)
            self.stats["refreshes"] += 1
            self.stats["refresh_tokens"] += evaluated

    @contextmanager
    def _holding_model(self, cancel: threading.Event) -> Iterator[LoadedModel | None]:
        """The loaded model, under the engine's model lock, for one background job; None when
        the job was cancelled while it waited for the lock, or no model is loaded."""
        if not self._engine._acquire(cancel):
            yield None
            return
        try:
            yield self._engine._loaded
        finally:
            self._engine._lock.release()

    def _answer_quickly(
        self,
        loaded: Any,
        request: CompletionRequest,
        multiline: bool,
        cancel: threading.Event,
        first_line: bool,
    ) -> None:
        """The short prompt's answer into the result cache (the waiting request takes it from
        there, see `wait_for`); a block's first line alone (its rest is not finished later: the
        full prompt is evaluated next). Called holding the model lock."""
        started = time.perf_counter()
        generated = self._engine._answer(
            loaded, request, multiline, cancel, started, first_line, True
        )
        result = generated.result
        if result is not None and result.text and not cancel.is_set():
            self._engine.cache.put(request.path, request.prefix, request.suffix, result)
            self.stats["completed_ahead"] += 1
            self.stats["quick_answers"] += 1

    def _evaluate(
        self, llm: Any, path: str, tokens: list[int], cancel: threading.Event, count: bool = True
    ) -> int:
        """All but the last prompt token into the KV cache, a step at a time (the request
        evaluates the last one itself: it needs that token's logits). Returns how many tokens
        it evaluated; `count`: as a prefill for a request (the stats)."""
        self._engine._slots.prepare(llm, path, tokens)
        keep = common_prefix(llm, tokens)
        if count:
            self.settle_prefill(keep)
        if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            keep = 0
        llm.n_tokens = keep
        position = keep
        end = len(tokens) - 1
        while position < end and not cancel.is_set():
            step = min(end, position + PREFILL_STEP)
            started = time.perf_counter()
            llm.eval(tokens[position:step])
            self._engine.prompt_speed.record(step - position, time.perf_counter() - started)
            position = step
        if not count:
            return position - keep
        self.stats["prefills"] += 1
        self.stats["prefill_cancelled"] += int(position < end)
        if position > keep:
            self._prefill_span = (keep, position)
            self.stats["prefill_tokens"] += position - keep
        return position - keep

    def settle_prefill(self, kept: int) -> None:
        """Count how much of the last prefill the next evaluation kept (the rest was wasted)."""
        span, self._prefill_span = self._prefill_span, None
        if span is not None:
            start, end = span
            self.stats["prefill_used_tokens"] += max(0, min(kept, end) - start)
