"""Keeping one place's retrieved snippets while the cursor stays near it, and (with
`completion.stable_context`) the context block itself when the cursor moves on.

Retrieval results shift with every keystroke and line, and the context block comes first in the
prompt, so new snippets make the model re-evaluate the whole prompt instead of the last few
tokens. While the cursor stays within `completion.sticky_context_lines` of the request that
retrieved them, in the same file, requests keep those snippets (and callers skip retrieval).

With `stable_context`, a new place keeps the block too when the block already shows one of the
place's two most relevant snippets (`holds_top_snippets`): its own snippets wait as `fresh` while
the first suggestions there use the block whose KV cells are already computed, and the engine
evaluates the fresh block's prompt in the background and `adopt`s it once that is done. Keeping
any block, whatever it showed, cost 2.5 to 3 points of exact match (README, Evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.request import CompletionRequest

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings

Place = tuple[str, int]  # (path, line of the cursor)


# A block showing either of a place's two best snippets served it as well as its own block
# (README, Evaluation: stable context).
TOP_SNIPPETS = 2


def holds_top_snippets(block: Sequence[ContextSnippet], own: Sequence[ContextSnippet]) -> bool:
    """Whether `block` shows one of the most relevant of a place's own snippets (the first
    `TOP_SNIPPETS`: retrieval ranks them), so the place may be answered from it while its own
    block is evaluated."""
    shown = {snippet.key for snippet in block}
    return any(snippet.key in shown for snippet in own[:TOP_SNIPPETS])


@dataclass(frozen=True)
class _Kept:
    place: Place
    snippets: tuple[ContextSnippet, ...]  # the block requests near `place` use
    fresh: tuple[ContextSnippet, ...] | None = None  # retrieved at `place`, not yet adopted


class StickyContext:
    """The snippets of the last request that retrieved some, and where it was.

    `stable`: a new place keeps the block (the local engine: its KV cache holds the block; an
    endpoint's cache is out of reach, so it does not)."""

    def __init__(self, stable: bool = False) -> None:
        self._stable = stable
        self._last: _Kept | None = None
        self.kept_blocks = 0  # new places answered with the block kept from elsewhere
        self.adopted_blocks = 0  # fresh blocks adopted after their background evaluation

    def clear(self) -> None:
        self._last = None

    def near(self, completion: CompletionSettings, path: str, line: int) -> bool:
        last = self._last
        if not completion.sticky_context or last is None:
            return False
        last_path, last_line = last.place
        return last_path == path and abs(line - last_line) <= completion.sticky_context_lines

    def wants_context(self, completion: CompletionSettings, path: str, prefix: str) -> bool:
        """False while the kept snippets still apply (retrieval can be skipped)."""
        return not self.near(completion, path, prefix.count("\n"))

    def apply(
        self, completion: CompletionSettings, request: CompletionRequest
    ) -> CompletionRequest:
        """`request` with the kept snippets when near them; at a new place its own, which are
        kept, or (stable_context) the kept block, with its own waiting to be adopted."""
        line = request.prefix.count("\n")
        last = self._last
        if last is not None and self.near(completion, request.path, line):
            return replace(request, context=last.snippets)
        place = (request.path, line)
        own = tuple(request.context)
        if self._keeps_block(completion, last, own):
            assert last is not None
            self._last = _Kept(place, last.snippets, own)
            self.kept_blocks += 1
            return replace(request, context=last.snippets)
        self._last = _Kept(place, own)
        return request

    def _keeps_block(
        self, completion: CompletionSettings, last: _Kept | None, own: tuple[ContextSnippet, ...]
    ) -> bool:
        return (
            self._stable
            and completion.stable_context
            and completion.sticky_context
            and last is not None
            and own != last.snippets
            # (an empty block, or a place without snippets, holds none of them)
            and holds_top_snippets(last.snippets, own)
        )

    def fresh_for(
        self, completion: CompletionSettings, request: CompletionRequest
    ) -> CompletionRequest | None:
        """`request` with the snippets retrieved at its place while they wait to be adopted
        (None when none wait, or the request is not near their place)."""
        last = self._last
        if last is None or last.fresh is None:
            return None
        if not self.near(completion, request.path, request.prefix.count("\n")):
            return None
        return replace(request, context=last.fresh)

    def adopt(self, fresh: tuple[ContextSnippet, ...]) -> bool:
        """The fresh block's prompt is evaluated: requests near its place use it from now on.
        False when the cursor has moved on meanwhile (another block waits, or none)."""
        last = self._last
        if last is None or last.fresh != fresh:
            return False
        self._last = _Kept(last.place, fresh)
        self.adopted_blocks += 1
        return True
