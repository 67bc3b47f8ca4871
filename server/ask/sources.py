"""What an answer stands on: the code in view first, then what retrieval finds for the question
in every workspace folder; and the answer as the server returns it, with its sources."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from repotune.server.completion.context import ContextSnippet, as_snippet
from repotune.server.index.retrieval import MAX_CURSOR_NAMES, cursor_names

if TYPE_CHECKING:
    from repotune.server.index.workspace import WorkspaceIndex

NOTHING_RETRIEVED = (
    "No indexed code was found for this question (the workspace may have no index yet, or it "
    "is still being built), so there is nothing to answer from."
)


@dataclass(frozen=True)
class Citation:
    path: str
    uri: str
    start_line: int
    end_line: int


@dataclass
class Answer:
    answer: str  # the model's own text
    citations: list[Citation]
    timings: dict[str, float]

    @property
    def text(self) -> str:
        """The answer with its sources listed, for clients that show text as it is."""
        if not self.citations:  # NOTHING_RETRIEVED says so itself
            return self.answer
        sources = "\n".join(
            f"- [{c.path}:{c.start_line}-{c.end_line}]({c.uri}#L{c.start_line})"
            for c in self.citations
        )
        return f"{self.answer}\n\n**Sources** (retrieved for this question):\n{sources}"


@dataclass(frozen=True)
class Source:
    """One snippet an answer is given, with the workspace folder it comes from."""

    root: Path
    snippet: ContextSnippet
    score: float = 0.0

    @property
    def citation(self) -> Citation:
        snippet = self.snippet
        return Citation(
            snippet.path,
            (self.root / snippet.path).as_uri(),
            snippet.start_line,
            snippet.last_line,
        )


def question_sources(
    folders: Iterable[tuple[Path, WorkspaceIndex, int]],
    question: str,
    top_k: int,
    in_view: Sequence[Source] = (),
) -> list[Source]:
    """The code in view (if any), then the `top_k` best chunks retrieved for `question` over
    all `folders` (root, index, that folder's k). A chunk lying mostly in the code in view is
    not shown again (one holding more of its file still is); code like it is searched for with
    the question, and the names it uses are looked up as if the question wrote them (their
    definitions are what "what does this do?" needs)."""
    code = "\n".join(s.snippet.text for s in in_view)
    used = tuple(cursor_names(code, "", 0, MAX_CURSOR_NAMES))
    hits: list[Source] = []
    for root, index, k in folders:
        shown = [s.snippet for s in in_view if s.root == root]
        for chunk in index.search_question(question, k, used, code):
            snippet = as_snippet(chunk)
            if not any(_mostly_within(snippet, other) for other in shown):
                hits.append(Source(root, snippet, chunk.score))
    hits.sort(key=lambda source: -source.score)
    return [*in_view, *hits[: max(top_k, 1)]]


def _mostly_within(snippet: ContextSnippet, shown: ContextSnippet) -> bool:
    """Whether at least half of `snippet`'s lines are lines of `shown` (same file)."""
    if snippet.path != shown.path:
        return False
    lines = snippet.last_line - snippet.start_line + 1
    common = min(snippet.last_line, shown.last_line) - max(snippet.start_line, shown.start_line)
    return 2 * (common + 1) >= lines
