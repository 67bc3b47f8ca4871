"""One completion's pipeline on a loaded model: prompt tokens -> decode -> postprocess -> result.

The engine (engine.py) decides when to run it and holds the model lock around it; work ahead
(work_ahead.py) runs the same pipeline in the background, so both answer alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from repotune.server.completion.decode import decode, timings_and_stats
from repotune.server.completion.line_copy import copied_line_rest
from repotune.server.completion.model import LoadedModel
from repotune.server.completion.postprocess import POSTPROCESS_WINDOW, postprocess
from repotune.server.completion.quick_start import slot_key
from repotune.server.completion.repo_ngrams import NgramPrior, RepositoryNgrams
from repotune.server.completion.request import (
    MAX_CHARS_PER_TOKEN,
    CompletionRequest,
    CompletionResult,
)
from repotune.server.completion.request_prompt import PreparedPrompt
from repotune.server.config import CompletionSettings
from repotune.server.llm.kv_slots import KvSlots


@dataclass
class Generated:
    """One generation's outcome: the result (None when nothing good), why it ended, its stats."""

    result: CompletionResult | None
    reason: str
    stats: dict[str, Any]
    tokens: tuple[int, ...] = ()  # what was generated (a first line's, to finish its block)


def generate(
    loaded: LoadedModel,
    settings: CompletionSettings,
    slots: KvSlots,
    request: CompletionRequest,
    prepared: PreparedPrompt,
    *,
    multiline: bool,
    cancel: threading.Event,
    started: float,
    first_line: bool,
    quick: bool,
    forced: Sequence[int],
    on_first_token: Callable[[int], None],
    ngrams: RepositoryNgrams | None = None,
) -> Generated:
    """Complete `prepared` (the request's prompt and its tokens); called holding the model lock.
    `quick`: from the short prompt (quick_start.py); `forced`: tokens generated earlier that
    this completion starts with; `on_first_token` gets how many prompt tokens were reused;
    `ngrams`: the repository's table, mixed into greedy decoding (repo_ngrams.py)."""
    prompt, tokens = prepared.prompt, prepared.tokens
    if cancel.is_set():
        return Generated(None, "cancelled", {})
    slots.prepare(loaded.llm, slot_key(request.path, quick), tokens)
    tokenized = time.perf_counter()
    # Stop rules look at nearby lines only: per token, a huge buffer must cost nothing more.
    near_prefix = request.prefix[-POSTPROCESS_WINDOW:]
    near_suffix = request.suffix[:POSTPROCESS_WINDOW]
    copied: list[int] = []
    if settings.copy_lines and not forced:
        copied = copied_tokens(loaded, request, prepared, near_prefix, near_suffix)
        forced = copied
    decoded = decode(
        loaded.llm,
        tokens,
        settings,
        stop=prompt.stop,
        near_prefix=near_prefix,
        near_suffix=near_suffix,
        multiline=multiline,
        cancel=cancel,
        first_line=first_line,
        forced=forced,
        on_first_token=on_first_token,
        healing=prepared.healing,
        vocabulary=loaded.vocabulary if prepared.healing else None,
        prior=ngram_prior(loaded, ngrams, settings, request, prepared),
        language=request.language,
    )
    if decoded is None or cancel.is_set():
        return Generated(None, "cancelled", {})
    reason = decoded.reason
    final = postprocess(
        decoded.text,
        prefix=near_prefix,
        suffix=near_suffix,
        multiline=multiline,
        stop=prompt.stop,
        language=request.language,
        stopped_by=reason,
    )
    timings, stats = timings_and_stats(len(tokens), decoded, started, tokenized)
    stats["quick"] = quick
    stats["copied_tokens"] = len(copied)
    counters = decoded.counters
    if final is None:
        return Generated(None, f"nothing left after post-processing (stop: {reason})", stats)
    result = CompletionResult(
        text=final,
        multiline=multiline and reason != "first line",
        timings=timings,
        prompt_tokens=len(tokens),
        reused_tokens=counters["reused"],
        generated_tokens=decoded.generated,
        cached=False,
        format=prompt.format,
        stop_reason=reason,
        prompt=prompt,
        drafted_tokens=counters["drafted"],
        accepted_tokens=counters["accepted"],
        quick=quick,
    )
    return Generated(result, reason, stats, tuple(decoded.tokens))


def loaded_tokenizer(loaded: LoadedModel) -> Callable[[str], list[int]]:
    """Text -> the generator's token ids (no BOS, markers as text)."""

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8", "ignore")
        return list(loaded.llm.tokenize(data, add_bos=False, special=False)) if data else []

    return tokenize


def ngram_prior(
    loaded: LoadedModel,
    ngrams: RepositoryNgrams | None,
    settings: CompletionSettings,
    request: CompletionRequest,
    prepared: PreparedPrompt,
) -> Callable[[Any, Sequence[int]], int] | None:
    """The repository's n-grams for this request, with the buffer's window around the cursor
    (its prefix ending as the prompt does)."""
    if ngrams is None:  # the engine gives none at weight 0
        return None
    prefix = request.prefix[-settings.prefix_tokens * MAX_CHARS_PER_TOKEN :]
    healed = prepared.healing.text
    window = prefix.encode("utf-8")
    if healed and window.endswith(healed):
        # The window ends where the prompt does: what healing dropped is the answer's to spell.
        prefix = window[: -len(healed)].decode("utf-8", "ignore")
    prior: NgramPrior = ngrams.prior(
        loaded_tokenizer(loaded),
        prefix,
        request.suffix[: settings.suffix_tokens * MAX_CHARS_PER_TOKEN],
        request.path,
        settings.repository_ngrams,
    )
    return prior.choose


def copied_tokens(
    loaded: LoadedModel,
    request: CompletionRequest,
    prepared: PreparedPrompt,
    near_prefix: str,
    near_suffix: str,
) -> list[int]:
    """The tokens of the line's rest as the repository writes it (line_copy.py), after what
    token healing left out of the prompt, and its end of line (the model would otherwise go on
    writing the same line); none where no one rest is found."""
    snippets = [*prepared.prompt.snippets, *request.context]
    rest = copied_line_rest(near_prefix, near_suffix, snippets)
    if rest is None:
        return []
    text = prepared.healing.text + rest.encode("utf-8") + b"\n"
    return list(loaded.llm.tokenize(text, add_bos=False, special=False))
