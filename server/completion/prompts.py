"""The fill-in-the-middle prompt: context, prefix and suffix cut to their budgets, then laid out
by the format. Shared by the server and the trainer (train as you serve).

Pure Python on purpose: the trainer imports this module without llama.cpp, and the tests check
exact layouts without a model. A prompt is a list of segments (see formats.py); `BuiltPrompt.text`
is the joined string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repotune.server.completion.context import (
    ContextSnippet,
    as_snippets,
    pack_context,
    segments_tokens,
)
from repotune.server.completion.formats import (
    LayoutParts,
    PromptFormat,
    Segment,
    get_format,
)
from repotune.server.completion.tokens import CountTokens
from repotune.server.completion.truncation import truncate_prefix, truncate_suffix

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings


# Room kept free in the context window for format markers and BOS.
MARKER_SLACK = 64


def scaled_budget(
    completion: CompletionSettings, window: int, generated: int, floor: int = 16
) -> tuple[int, int, int]:
    """The settings' (context, prefix, suffix) split, scaled down to fit a `window` of tokens
    that also holds `generated` tokens; `floor` bounds the room the scale assumes."""
    room = window - MARKER_SLACK - generated
    parts = (completion.context_tokens, completion.prefix_tokens, completion.suffix_tokens)
    total = sum(parts)
    if total <= room:
        return parts
    scale = max(room, floor) / total
    return (int(parts[0] * scale), max(16, int(parts[1] * scale)), int(parts[2] * scale))


# --------------------------------------------------------------------------- built prompt


@dataclass(frozen=True)
class BuiltPrompt:
    """A packed prompt and what went into it.

    Token counts are the sums of the per-part counts used for budgeting (the engine reports the
    exact total after tokenizing). `prefix`/`suffix` are the kept parts of the cursor's text.
    """

    format: str
    segments: tuple[Segment, ...]
    stop: tuple[str, ...]
    end_of_middle: str
    special_markers: bool
    prefix: str
    suffix: str
    snippets: tuple[ContextSnippet, ...]
    dropped_snippets: int
    context_tokens: int
    prefix_tokens: int
    suffix_tokens: int
    prefix_lines_dropped: int
    suffix_lines_dropped: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)

    @property
    def tokens(self) -> int:
        return self.context_tokens + self.prefix_tokens + self.suffix_tokens

    def with_middle(self, middle: str) -> str:
        """The training text: prompt, target middle, end-of-middle marker."""
        return self.text + middle + self.end_of_middle


# --------------------------------------------------------------------------- builder


# The cursor line's share of the prefix budget is reserved in steps of this many tokens, so typing
# does not move the first kept line on every keystroke (KV-cache reuse). Engine and trainer both
# cut prefixes with it, so training prompts look exactly like served ones.
PREFIX_QUANTUM = 32


class PromptCancelled(Exception):
    """The request was cancelled while its prompt was being packed."""


def build_fim_prompt(
    fmt: PromptFormat | str,
    *,
    path: str,
    prefix: str,
    suffix: str,
    context: Sequence[Any] = (),
    budget: tuple[int, int, int],
    count_tokens: CountTokens,
    repo_name: str | None = None,
    prefix_quantum: int = 1,
) -> BuiltPrompt:
    """Pack context, prefix and suffix into `fmt`'s layout within `budget`.

    `budget` is (context_tokens, prefix_tokens, suffix_tokens); each part is cut at line
    boundaries (prefix keeps its last lines, suffix its first, context its most relevant
    snippets). `context` items are ContextSnippets or anything with .path/.text/.start_line.
    Markers that are special tokens count as one token each. `prefix_quantum`: see
    `truncate_prefix` (the server passes 32; 1 packs exactly).
    """
    if isinstance(fmt, str):
        fmt = get_format(fmt)
    context_budget, prefix_budget, suffix_budget = budget
    snippets = as_snippets(context)
    kept, context_used, dropped = pack_context(fmt, snippets, context_budget, count_tokens)
    kept_prefix, prefix_used, prefix_dropped = truncate_prefix(
        prefix, prefix_budget, count_tokens, prefix_quantum
    )
    kept_suffix, suffix_used, suffix_dropped = truncate_suffix(suffix, suffix_budget, count_tokens)

    context_segments: list[Segment] = []
    for snippet in kept:
        context_segments.extend(fmt.render_context(snippet))

    name = fmt.name
    segments, notes = fmt.arrange(
        LayoutParts(path, kept_prefix, kept_suffix, tuple(context_segments), repo_name),
    )
    segments = [segment for segment in segments if segment.text]
    # Markers and headers belong to the context share of the count.
    overhead = segments_tokens(segments, count_tokens, fmt.special) - segments_tokens(
        [*context_segments, Segment(kept_prefix), Segment(kept_suffix)], count_tokens, fmt.special
    )
    return BuiltPrompt(
        format=name,
        segments=tuple(segments),
        stop=fmt.stop,
        end_of_middle=fmt.end_of_middle,
        special_markers=fmt.special,
        prefix=kept_prefix,
        suffix=kept_suffix,
        snippets=tuple(kept),
        dropped_snippets=dropped,
        context_tokens=context_used + max(0, overhead),
        prefix_tokens=prefix_used,
        suffix_tokens=suffix_used,
        prefix_lines_dropped=prefix_dropped,
        suffix_lines_dropped=suffix_dropped,
        notes=tuple(notes),
    )
