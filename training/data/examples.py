"""One file's examples: retrieved context (filtered by split), the serving prompt and its tokens."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.formats import PromptFormat
from repotune.server.completion.model import format_of
from repotune.server.completion.prompts import PREFIX_QUANTUM, build_fim_prompt, scaled_budget
from repotune.server.completion.tokens import CachedTokenCounter
from repotune.server.config import Settings
from repotune.server.index.chunking import Chunk
from repotune.training.base import TrainError
from repotune.training.data.spans import Span, example_id
from repotune.training.data.splits import SourceFile, allowed_context

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
log = logging.getLogger(__name__)


class Retriever:
    """The server's index, filtered so an example never sees a file it must not see."""

    def __init__(self, root: Path, settings: Settings, index: Any = None) -> None:
        self.settings = settings
        self.index = index
        self._own = False
        if index is None:
            from repotune.server.index.workspace import WorkspaceIndex

            self.index = WorkspaceIndex(root, settings)
            self._own = True
            self.index.start(watch=False)
            if not self.index.wait_idle(timeout=3600):
                raise TrainError("indexing the repository did not finish within an hour")
        self.dense = bool(getattr(self.index, "dense", False))
        if self.dense and hasattr(self.index, "load_query_embedder"):
            # An index handed in (or already complete) may never have loaded its embedder;
            # without it every query would silently be lexical-only.
            try:
                self.index.load_query_embedder()
            except Exception as exc:  # no embedder: lexical retrieval, and the stats say so
                self.dense = False
                log.warning("dense retrieval unavailable for the dataset: %s", exc)

    def close(self) -> None:
        if self._own and self.index is not None:
            self.index.close()

    def search(
        self,
        path: str,
        prefix: str,
        suffix: str,
        middle_lines: tuple[int, int],
        allowed: set[str],
        k: int,
    ) -> list[Any]:
        lines = self.settings.retrieval.query_lines
        results = self.index.search_cursor(path, prefix, suffix, k * 4 + 8)
        kept = []
        for chunk in results:
            if chunk.path not in allowed:
                continue
            if chunk.path == path and not (
                chunk.end_line < middle_lines[0] - lines
                or chunk.start_line > middle_lines[1] + lines
            ):
                continue  # never show the target (or its serving window) as context
            kept.append(chunk)
            if len(kept) >= k:
                break
        return kept


class TokenCounter:
    """llama.cpp's own tokenizer for the generator (vocabulary only), as the engine counts."""

    def __init__(self, model_path: Path) -> None:
        from repotune.server.llm.runtime import load_vocabulary

        self.llm = load_vocabulary(model_path)
        llm = self.llm
        self._counter = CachedTokenCounter(
            lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
            max_entries=50_000,
        )

    def __call__(self, text: str) -> int:
        return self._counter(text)

    def prompt_format(self, settings: Settings) -> PromptFormat:
        return format_of(self.llm, settings.model.prompt_format)


def serving_budget(settings: Settings) -> tuple[int, int, int]:
    """The engine's split, scaled to fit `train.max_seq_tokens` with room for the middle."""
    comp = settings.completion
    return scaled_budget(comp, settings.train.max_seq_tokens, comp.max_tokens_block, floor=48)


def context_hit(middle: str, visible: str, snippets: Sequence[ContextSnippet]) -> bool:
    """Could the context have helped: an identifier of the middle that only the context shows."""
    wanted = set(IDENTIFIER.findall(middle)) - set(IDENTIFIER.findall(visible))
    if not wanted:
        return False
    shown = set()
    for snippet in snippets:
        shown.update(IDENTIFIER.findall(snippet.text))
    return bool(wanted & shown)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


@dataclass
class Builder:
    settings: Settings
    fmt: PromptFormat
    count: TokenCounter
    retriever: Retriever
    files: Sequence[SourceFile]
    distractor_pool: dict[str, list[Chunk]]
    rng: random.Random

    def example(self, source: SourceFile, span: Span) -> dict[str, Any] | None:
        data = source.data
        prefix = data[: span.start].decode("utf-8", errors="replace")
        middle = data[span.start : span.end].decode("utf-8", errors="replace")
        suffix = data[span.end :].decode("utf-8", errors="replace")
        if not middle.strip():
            return None
        completion_tokens = self.count(middle + self.fmt.end_of_middle)
        if completion_tokens > self.settings.completion.max_tokens_block:
            return None
        train = self.settings.train
        allowed = allowed_context(source.split, self.files)
        lines = (_line_of(data, span.start), _line_of(data, span.end))
        retrieved = self.retriever.search(
            source.path, prefix, suffix, lines, allowed, self.settings.retrieval.top_k
        )
        distractors = self._distractors(source.path, allowed, {c.path for c in retrieved})
        mode = "retrieved"
        if self.rng.random() < train.no_context_share:
            mode = "distractors_only"
            retrieved = []
        roles = {(c.path, c.start_line): "retrieved" for c in retrieved}
        for c in distractors:  # (one may repeat a retrieved chunk in a very small repository)
            roles.setdefault((c.path, c.start_line), "distractor")
        context = [*retrieved, *distractors]
        if not context:
            mode = "none"
        built = build_fim_prompt(
            self.fmt,
            path=source.path,
            prefix=prefix,
            suffix=suffix,
            context=context,
            budget=serving_budget(self.settings),
            count_tokens=self.count,
            prefix_quantum=PREFIX_QUANTUM,  # exactly as the engine cuts the prefix
        )
        kept_retrieved = [
            s for s in built.snippets if roles.get((s.path, s.start_line)) == "retrieved"
        ]
        return {
            "id": example_id(source.path, span),
            "kind": span.kind,
            "span": span.span,
            "split": source.split,
            "path": source.path,
            "language": source.language,
            "start_byte": span.start,
            "end_byte": span.end,
            "format": built.format,
            "prompt": built.text,
            # The third field marks the segment that ends at the cursor (token healing).
            "segments": [[s.text, s.marker, s.cursor] for s in built.segments],
            "completion": middle + built.end_of_middle,
            "middle": middle,
            "context": [
                {
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.last_line,
                    "role": roles.get((s.path, s.start_line), "retrieved"),
                }
                for s in built.snippets
            ],
            "context_mode": mode,
            "context_hit": context_hit(middle, built.prefix + built.suffix, kept_retrieved),
            "prompt_tokens": built.tokens,
            "completion_tokens": completion_tokens,
        }

    def _distractors(self, path: str, allowed: set[str], avoid: set[str]) -> list[Chunk]:
        """Chunks of other allowed files, preferably files retrieval did not find (`avoid`);
        in a repository too small for that, any other allowed file."""
        count = self.settings.train.distractors
        candidates = [p for p in sorted(allowed) if p != path and self.distractor_pool.get(p)]
        pool = [p for p in candidates if p not in avoid] or candidates
        if not pool or count == 0:
            return []
        chosen = []
        for name in self.rng.sample(pool, min(count, len(pool))):
            chosen.append(self.rng.choice(self.distractor_pool[name]))
        return chosen
