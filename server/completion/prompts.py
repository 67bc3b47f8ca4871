"""Context packing and the fill-in-the-middle prompt, shared by the server and the trainer
(train as you serve).

Pure Python on purpose: the trainer imports this module without llama.cpp, and the tests check
exact layouts without a model. A prompt is a list of segments (see formats.py); `BuiltPrompt.text`
is the joined string. Each part (context, prefix, suffix) is cut to its token budget at line
boundaries, then the format lays the parts out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repotune.server.completion.formats import (
    LayoutParts,
    PromptFormat,
    Segment,
    get_format,
)

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings

CountTokens = Callable[[str], int]


# --------------------------------------------------------------------------- snippets


@dataclass(frozen=True)
class ContextSnippet:
    """A piece of another file (or another part of this file) shown to the model."""

    path: str
    text: str
    start_line: int = 1
    end_line: int | None = None

    @property
    def last_line(self) -> int:
        if self.end_line is not None:
            return self.end_line
        return self.start_line + max(0, self.text.rstrip("\n").count("\n"))

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
    )


def as_snippets(items: Iterable[Any]) -> list[ContextSnippet]:
    return [as_snippet(item) for item in items]


# --------------------------------------------------------------------------- formats

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


# --------------------------------------------------------------------------- truncation


def _cut_to_tokens_right(text: str, budget: int, count: CountTokens) -> str:
    """The longest tail of one line that fits (only for a single over-long line)."""
    if budget <= 0:
        return ""
    low, high = 0, len(text)
    while low < high:  # smallest start index whose tail fits
        mid = (low + high) // 2
        if count(text[mid:]) <= budget:
            high = mid
        else:
            low = mid + 1
    return text[low:]


def _cut_to_tokens_left(text: str, budget: int, count: CountTokens) -> str:
    if budget <= 0:
        return ""
    low, high = 0, len(text)
    while low < high:  # largest end index whose head fits
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]


# A token is rarely longer than this many characters: a window of budget x this holds what fits
# the budget, and tokenizing it costs the same whatever the length of the file or of its lines
# (a 20 MB minified line used to be tokenized whole, again and again).
MAX_CHARS_PER_TOKEN = 16


def prefix_window(prefix: str, budget: int) -> tuple[str, int]:
    """The end of `prefix` that can matter for `budget` tokens, from a line start when there is
    one in reach; returns (window, lines before it)."""
    limit = max(budget, 1) * MAX_CHARS_PER_TOKEN
    if len(prefix) <= limit:
        return prefix, 0
    cut = len(prefix) - limit
    newline = prefix.find("\n", cut)
    start = newline + 1 if newline >= 0 else cut
    return prefix[start:], prefix.count("\n", 0, start)


def suffix_window(suffix: str, budget: int) -> str:
    """The start of `suffix` that can matter for `budget` tokens, ending at a line end when
    there is one in reach."""
    limit = max(budget, 1) * MAX_CHARS_PER_TOKEN
    if len(suffix) <= limit:
        return suffix
    newline = suffix.rfind("\n", 0, limit)
    return suffix[: newline if newline >= 0 else limit]


def clip_to_tokens(text: str, budget: int, count: CountTokens) -> str:
    """The longest head of `text` within `budget` tokens (a question too long for the context);
    only a window of budget x MAX_CHARS_PER_TOKEN characters is ever tokenized."""
    head = (
        suffix_window(text, budget)
        if "\n" in text
        else text[: max(budget, 1) * MAX_CHARS_PER_TOKEN]
    )
    if count(head) <= budget:
        return head
    return _cut_to_tokens_left(head, budget, count)


def truncate_prefix(
    prefix: str, budget: int, count: CountTokens, quantum: int = 1
) -> tuple[str, int, int]:
    """Keep the last whole lines of `prefix` that fit `budget` (the cursor's line always).

    `quantum` > 1 keeps the window's first line still while the cursor moves on, so llama.cpp
    re-evaluates the last few tokens instead of the whole prefix: the cursor line's share is
    reserved in steps of `quantum` tokens (typing on one line), and the first kept line is the
    first line number divisible by PREFIX_LINE_STEP that fits (typing on into the next lines).
    Only `prefix_window` is tokenized. Returns (kept text, tokens counted, lines dropped).
    """
    window, base = prefix_window(prefix, budget)
    lines = window.split("\n")
    current = lines[-1]
    used = count(current) if current else 0
    if used > budget:
        current = _cut_to_tokens_right(current, budget, count)
        return current, count(current) if current else 0, base + len(lines) - 1
    reserve = min(budget, -(-max(used, 1) // quantum) * quantum) if quantum > 1 else used
    spent = reserve
    start = len(lines) - 1  # index of the first kept line (in the window)
    costs: list[int] = []
    for line in reversed(lines[:-1]):
        cost = count(line + "\n")
        if spent + cost > budget:
            break
        spent += cost
        costs.append(cost)
        start -= 1
    if quantum > 1 and base + start > 0:
        # Line numbers of the whole prefix, so the first kept line stays put as the window moves.
        stable_line = -(-(base + start) // PREFIX_LINE_STEP) * PREFIX_LINE_STEP
        stable = min(len(lines) - 1, stable_line - base)
        costs = costs[: len(costs) - (stable - start)]  # costs run from the cursor upwards
        start = stable
    used += sum(costs)
    return "\n".join(lines[start:]), used, base + start


def truncate_suffix(suffix: str, budget: int, count: CountTokens) -> tuple[str, int, int]:
    """Keep the first whole lines of `suffix` that fit `budget` (the cursor's line first)."""
    if not suffix or budget <= 0:
        return "", 0, suffix.count("\n") + (1 if suffix else 0)
    total_lines = suffix.count("\n") + 1
    lines = suffix_window(suffix, budget).split("\n")
    first = lines[0]
    used = count(first) if first else 0
    if used > budget:
        first = _cut_to_tokens_left(first, budget, count)
        return first, count(first) if first else 0, total_lines - 1
    kept = [first]
    for line in lines[1:]:
        cost = count("\n" + line)
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept), used, total_lines - len(kept)


# --------------------------------------------------------------------------- context


def _segments_tokens(segments: Sequence[Segment], count: CountTokens, special: bool) -> int:
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
        key = (snippet.path, snippet.start_line, snippet.last_line)
        if key in seen or not snippet.text.strip():
            dropped += 1
            continue
        seen.add(key)
        cost = _segments_tokens(fmt.render_context(snippet), count, fmt.special)
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
            cut_cost = _segments_tokens(fmt.render_context(cut), count, fmt.special)
            if used + cut_cost <= budget:
                chosen.append(cut)
                used += cut_cost
                continue
        dropped += 1
    chosen.sort(key=lambda s: (s.path, s.start_line, s.last_line))
    return chosen, used, dropped


# --------------------------------------------------------------------------- builder


class CachedTokenCounter:
    """Token counts memoised per text: packing a prompt counts the same lines again and again,
    for the engine and for the trainer alike. `tokenize` turns text into token ids.

    Bounded: least recently used entries go first once there are `max_entries` or their texts
    hold `max_chars` characters, and a text longer than `max_key_chars` is counted, not kept (a
    huge buffer's strings must not outlive its request)."""

    def __init__(
        self,
        tokenize: Callable[[str], Sequence[int]],
        max_entries: int = 20_000,
        max_chars: int = 4_000_000,
        max_key_chars: int = 16_384,
    ):
        self._tokenize = tokenize
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._max_key_chars = max_key_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def chars(self) -> int:
        return self._chars

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            count = self._counts.get(text)
            if count is not None:
                self._counts.move_to_end(text)
                return count
        count = len(self._tokenize(text))
        if len(text) > self._max_key_chars:
            return count
        with self._lock:
            if text not in self._counts:
                self._counts[text] = count
                self._chars += len(text)
            while len(self._counts) > self._max_entries or self._chars > self._max_chars:
                old, _ = self._counts.popitem(last=False)
                self._chars -= len(old)
        return count


# The cursor line's share of the prefix budget is reserved in steps of this many tokens, so typing
# does not move the first kept line on every keystroke (KV-cache reuse). Engine and trainer both
# cut prefixes with it, so training prompts look exactly like served ones.
PREFIX_QUANTUM = 32
# The prefix window's first line moves in steps of this many lines (see truncate_prefix).
PREFIX_LINE_STEP = 8


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
    overhead = _segments_tokens(segments, count_tokens, fmt.special) - _segments_tokens(
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
