"""Each evaluation task's retrieved context, as the server would give it: from an index of the
whole repository minus the task's hole, once per task, shared by every "+ctx" condition."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from repotune.server.completion.repo_ngrams import RepositoryTexts
from repotune.server.config import Settings
from repotune.training.data.examples import Retriever
from repotune.training.eval.adapters import Prepared, open_index
from repotune.training.eval.metrics import mean, percentile
from repotune.training.eval.tasks import Task


@dataclass
class Retrieved:
    snippets: list[Any]
    ms: float
    hit: bool | None  # None: the answer uses no cross-file definition


def retrieve_all(
    prepared: Prepared, tasks: Sequence[Task], settings: Settings
) -> tuple[list[Retrieved], RepositoryTexts]:
    """Context for every task, once, from an index of the whole repository minus the hole;
    and the index's texts for the repository's n-grams (the engine leaves out the task's own
    file: its request's buffer stands for it)."""
    from repotune.server.completion.context import as_snippets
    from repotune.server.completion.repo_ngrams import snapshot

    index = open_index(prepared.repo.root, settings)
    retriever = Retriever(prepared.repo.root, settings, index)
    allowed = {f.path for f in prepared.files}
    k = settings.retrieval.top_k
    out = []
    try:
        for task in tasks:
            started = time.perf_counter()
            chunks = retriever.search(
                task.path, task.prefix, task.suffix, task.target_lines, allowed, k
            )
            ms = (time.perf_counter() - started) * 1000
            hit: bool | None = None
            if task.definitions:
                hit = any(
                    chunk.path == d.path and chunk.start_line <= d.start_line <= chunk.end_line
                    for chunk in chunks
                    for d in task.definitions
                )
            out.append(Retrieved(as_snippets(chunks), ms, hit))
        texts = snapshot(index.store, allowed)
    finally:
        index.close()
    return out, texts


def previous_contexts(
    tasks: Sequence[Task], contexts: Sequence[Retrieved], settings: Settings
) -> tuple[list[Retrieved], int]:
    """Each task's context as `completion.stable_context` gives a new place its first
    suggestions: the snippets retrieved for the task before it (the first task: the last's) when
    they hold one of the task's own top snippets (`holds_top_snippets`), else its own. Kept
    snippets that show the task's hole (or its serving window) are dropped, as retrieval drops
    them. Also: how many kept."""
    from repotune.server.completion.sticky import holds_top_snippets

    lines = settings.retrieval.query_lines
    out = []
    kept_count = 0
    for i, task in enumerate(tasks):
        first, last = task.target_lines
        kept = [
            snippet
            for snippet in contexts[i - 1].snippets
            if snippet.path != task.path
            or snippet.last_line < first - lines
            or snippet.start_line > last + lines
        ]
        if holds_top_snippets(kept, contexts[i].snippets):
            kept_count += 1
            out.append(Retrieved(kept, 0.0, None))
        else:
            out.append(contexts[i])
    return out, kept_count


def retrieval_summary(contexts: Sequence[Retrieved], settings: Settings) -> dict[str, Any]:
    with_defs = [c.hit for c in contexts if c.hit is not None]
    return {
        "k": settings.retrieval.top_k,
        "recall_at_k": mean([float(h) for h in with_defs]),
        "tasks_with_definitions": len(with_defs),
        "latency_ms": {
            "p50": percentile([c.ms for c in contexts], 50),
            "p95": percentile([c.ms for c in contexts], 95),
        },
        "snippets_per_task": mean([len(c.snippets) for c in contexts]),
    }
