"""Context snippets (other files, or other parts of this one) and packing the most relevant ones
into the context's token budget."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from repotune.server.completion.formats import PromptFormat, Segment
from repotune.server.completion.tokens import CountTokens


@dataclass(frozen=True)
class ContextSnippet:
    """A piece of another file (or another part of this file) shown to the model."""

    path: str
    text: str
    start_line: int = 1
    end_line: int | None = None
    symbol: str | None = None  # the chunk's definition ("Owner.member"), when retrieval knows it
    in_view: bool = False  # the code a question is asked about (a selection: ask/focus.py)

    @property
    def last_line(self) -> int:
        if self.end_line is not None:
            return self.end_line
        return self.start_line + max(0, self.text.rstrip("\n").count("\n"))

    @property
    def key(self) -> tuple[str, int, int]:
        """Which lines of which file: the same code whatever retrieval returned it."""
        return (self.path, self.start_line, self.last_line)

    @property
    def citation(self) -> str:
        """``path:start-end``, the way answers cite code."""
        return f"{self.path}:{self.start_line}-{self.last_line}"


def as_snippet(item: Any) -> ContextSnippet:
    """Anything with ``.path``/``.text``/``.start_line`` (e.g. retrieval's RetrievedChunk)."""
    if isinstance(item, ContextSnippet):
        return item
    return ContextSnippet(
        path=str(item.path),
        text=str(item.text),
        start_line=int(getattr(item, "start_line", 1) or 1),
        end_line=getattr(item, "end_line", None),
        symbol=getattr(item, "symbol", None),
        in_view=bool(getattr(item, "in_view", False)),
    )


def as_snippets(items: Iterable[Any]) -> list[ContextSnippet]:
    return [as_snippet(item) for item in items]


def segments_tokens(segments: Sequence[Segment], count: CountTokens, special: bool) -> int:
    total = 0
    for segment in segments:
        if not segment.text:
            continue
        total += 1 if (segment.marker and special) else count(segment.text)
    return total


def pack_context(
    fmt: PromptFormat,
    snippets: Sequence[ContextSnippet],
    budget: int,
    count: CountTokens,
    min_lines: int = 3,
) -> tuple[list[ContextSnippet], int, int]:
    """Choose snippets by relevance (input order) until `budget` is spent, then sort them.

    A snippet that does not fit whole is cut at a line boundary (its head kept) when at least
    `min_lines` fit. The kept ones come back ordered by (path, start_line): a stable order means
    the same retrieved set always gives the same token prefix, so llama.cpp reuses its KV cache.
    Returns (kept snippets, tokens used, snippets dropped).
    """
    chosen: list[ContextSnippet] = []
    used = 0
    dropped = 0
    seen: set[tuple[str, int, int]] = set()
    for snippet in snippets:
        if snippet.key in seen or not snippet.text.strip():
            dropped += 1
            continue
        seen.add(snippet.key)
        cost = segments_tokens(fmt.render_context(snippet), count, fmt.special)
        if used + cost <= budget:
            chosen.append(snippet)
            used += cost
            continue
        lines = snippet.text.rstrip("\n").split("\n")
        overhead = cost - count(snippet.text)
        remaining = budget - used - overhead
        kept_lines: list[str] = []
        spent = 0
        for line in lines:
            line_cost = count(line + "\n")
            if spent + line_cost > remaining:
                break
            kept_lines.append(line)
            spent += line_cost
        if len(kept_lines) >= min_lines:
            cut = ContextSnippet(
                snippet.path,
                "\n".join(kept_lines) + "\n",
                snippet.start_line,
                snippet.start_line + len(kept_lines) - 1,
            )
            cut_cost = segments_tokens(fmt.render_context(cut), count, fmt.special)
            if used + cut_cost <= budget:
                chosen.append(cut)
                used += cut_cost
                continue
        dropped += 1
    chosen.sort(key=lambda s: s.key)
    return chosen, used, dropped
