"""Greedy decoding over llama.cpp's KV cache, with prompt-lookup drafts verified in one batch."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from repotune.server.llm.healing import Speller


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


def _logits(llm: Any, index: int) -> Any:
    import numpy as np

    pointer = llm._ctx.get_logits_ith(index)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))


def _argmax(llm: Any, index: int) -> int:
    return int(_logits(llm, index).argmax())


# Picks the next token from the logits and the answer's tokens so far (repo_ngrams.NgramPrior).
Choose = Callable[[Any, Sequence[int]], int]


def greedy_tokens(
    llm: Any,
    tokens: Sequence[int],
    lookup: bool,
    counters: dict[str, int],
    speller: Speller | None = None,
    choose: Choose | None = None,
    answer_start: int | None = None,
) -> Generator[int, None, None]:
    """Greedy decoding with llama.cpp's KV cache reused for the common prefix, and optional
    prompt-lookup drafts verified in one batch.

    llama-cpp-python's own LlamaPromptLookupDecoding needs logits_all=True, which computes the
    262k-way output layer for every prompt token of Gemma 3 (cold prompts several times slower),
    so drafts are verified here with logits requested only for the draft positions.
    Stopping is just not asking for the next token; the context stays consistent either way.
    `speller`: token healing's constraint on the first tokens (no drafts until it is met).
    `choose`: picks each free token instead of the argmax, given the answer's tokens so far
    (from `answer_start` in `tokens`, forced ones included).
    """
    start = len(tokens) if answer_start is None else answer_start

    def pick(index: int, answer: Sequence[int]) -> int:
        if choose is None:
            return _argmax(llm, index)
        return choose(_logits(llm, index), answer)

    def next_token(index: int) -> int:
        if speller is not None and speller.remaining:
            if choose is None:
                return speller.choose(_logits(llm, index))
            # Among the tokens that spell what healing dropped, `choose` decides too.
            token = choose(speller.mask(_logits(llm, index)), history[start:])
            speller.advance(token)
            return token
        return pick(index, history[start:])

    keep = common_prefix(llm, tokens)
    if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        keep = 0
    llm.n_tokens = keep
    counters["reused"] = keep
    llm.eval(list(tokens[keep:]))
    history = list(tokens)
    token = next_token(-1)
    limit = llm.n_ctx() - 1
    while True:
        yield token
        history.append(token)
        spelling = speller is not None and bool(speller.remaining)
        draft = lookup_draft(history) if lookup and not spelling else []
        batch = [token, *draft]
        n_past = llm.n_tokens
        if n_past + len(batch) >= limit:
            return
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=bool(draft))
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        if not draft:
            token = next_token(-1)
            continue
        counters["drafted"] += len(draft)
        accepted = 0
        token = -1
        for position, proposed in enumerate(draft):
            predicted = pick(position, [*history[start:], *draft[:position]])
            if predicted != proposed:
                token = predicted
                break
            accepted += 1
        if token < 0:
            token = pick(len(draft), [*history[start:], *draft])
        counters["accepted"] += accepted
        keep = n_past + 1 + accepted
        if keep < llm.n_tokens:
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        for proposed in draft[:accepted]:
            yield proposed
            history.append(proposed)
