"""Keeping one place's retrieved snippets while the cursor stays near it.

Retrieval results shift with every keystroke and line, and the context block comes first in the
prompt, so new snippets make the model re-evaluate the whole prompt instead of the last few
tokens. While the cursor stays within `completion.sticky_context_lines` of the request that
retrieved them, in the same file, requests keep those snippets (and callers skip retrieval).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.request import CompletionRequest

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings


class StickyContext:
    """The snippets of the last request that retrieved some, and where it was."""

    def __init__(self) -> None:
        self._last: tuple[tuple[str, int], tuple[ContextSnippet, ...]] | None = None

    def clear(self) -> None:
        self._last = None

    def near(self, completion: CompletionSettings, path: str, line: int) -> bool:
        last = self._last
        if not completion.sticky_context or last is None:
            return False
        (last_path, last_line), _ = last
        return last_path == path and abs(line - last_line) <= completion.sticky_context_lines

    def wants_context(self, completion: CompletionSettings, path: str, prefix: str) -> bool:
        """False while the kept snippets still apply (retrieval can be skipped)."""
        return not self.near(completion, path, prefix.count("\n"))

    def apply(
        self, completion: CompletionSettings, request: CompletionRequest
    ) -> CompletionRequest:
        """`request` with the kept snippets when near them; else its own, which are kept."""
        line = request.prefix.count("\n")
        last = self._last
        if last is not None and self.near(completion, request.path, line):
            return replace(request, context=last[1])
        self._last = ((request.path, line), tuple(request.context))
        return request
