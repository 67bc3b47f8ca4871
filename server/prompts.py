"""Prompt formats and context packing, shared by the server and the trainer (train as you serve).

Pure Python on purpose: the trainer imports this module without llama.cpp, and the tests check
exact layouts without a model. A prompt is a list of segments; a segment is either code/text
(tokenized as plain text) or a format marker (tokenized as a special token when the format's
markers are special tokens of the model's vocabulary). `BuiltPrompt.text` is the joined string.

Formats (`FORMATS`):
- ``repotune``: for models without fill-in-the-middle tokens (the default Gemma 3 270M). Plain-text
  markers that fine-tuning teaches; suffix before prefix, so that typing (which only changes the
  end of the prefix) lets llama.cpp reuse the whole KV cache up to the cursor::

      <|rt_file|>lib/util.py:10-24        (one block per retrieved snippet, stable order)
      def helper(): ...
      <|rt_suffix|>pkg/mod.py              (the current file: text after the cursor)
      return value
      <|rt_prefix|>pkg/mod.py              (text before the cursor; generation continues it)
      def f(x):
          <cursor>

  and the trainer appends ``middle + "<|rt_end|>"``. Any ``<|rt_`` in the output is a stop.
- ``qwen2.5-coder``: repo-level layout ``<|repo_name|>``, ``<|file_sep|>path`` per file, then
  ``<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>`` for the current file.
- ``starcoder2``: ``<repo_name>…<file_sep>path\\n…<file_sep><fim_prefix>path\\n…<fim_suffix>…
  <fim_middle>``.
- ``deepseek-coder``: ``<｜fim▁begin｜>`` + context files as ``# path`` comment blocks + prefix,
  ``<｜fim▁hole｜>`` suffix ``<｜fim▁end｜>``.
- ``codellama``: ``<PRE> context+prefix <SUF>suffix <MID>``, middle ends with ``<EOT>``.
- ``codegemma``: context files as ``path\\n…<|file_separator|>``, then
  ``<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>``; middle ends with ``<|file_separator|>``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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

Order = Literal["spm", "psm"]


@dataclass(frozen=True)
class PromptFormat:
    """One model family's fill-in-the-middle layout.

    `end_of_middle` is what the trainer appends after the target middle; `stop` lists the strings
    that end a completion at serving time; `special` says whether the markers are special tokens
    (tokenize them with special=True) or plain text.
    """

    name: str
    prefix_marker: str
    suffix_marker: str
    middle_marker: str
    end_of_middle: str
    stop: tuple[str, ...]
    special: bool
    order: Order = "psm"
    file_marker: str | None = None  # starts each context file (repo-level layouts)
    repo_marker: str | None = None  # names the repository (repo-level layouts)
    description: str = ""


REPOTUNE = PromptFormat(
    name="repotune",
    prefix_marker="<|rt_prefix|>",
    suffix_marker="<|rt_suffix|>",
    middle_marker="",
    end_of_middle="<|rt_end|>",
    stop=("<|rt_",),
    special=False,
    order="spm",
    file_marker="<|rt_file|>",
    description="RepoTune plain-text markers for models without FIM tokens (taught by fine-tuning)",
)

QWEN25_CODER = PromptFormat(
    name="qwen2.5-coder",
    prefix_marker="<|fim_prefix|>",
    suffix_marker="<|fim_suffix|>",
    middle_marker="<|fim_middle|>",
    end_of_middle="<|endoftext|>",
    stop=(
        "<|endoftext|>",
        "<|file_sep|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|im_end|>",
    ),
    special=True,
    file_marker="<|file_sep|>",
    repo_marker="<|repo_name|>",
    description="Qwen2.5-Coder repo-level FIM",
)

STARCODER2 = PromptFormat(
    name="starcoder2",
    prefix_marker="<fim_prefix>",
    suffix_marker="<fim_suffix>",
    middle_marker="<fim_middle>",
    end_of_middle="<file_sep>",
    stop=("<file_sep>", "<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    special=True,
    file_marker="<file_sep>",
    repo_marker="<repo_name>",
    description="StarCoder2 repo-level FIM",
)

DEEPSEEK_CODER = PromptFormat(
    name="deepseek-coder",
    prefix_marker="<｜fim▁begin｜>",
    suffix_marker="<｜fim▁hole｜>",
    middle_marker="<｜fim▁end｜>",
    end_of_middle="<｜end▁of▁sentence｜>",
    stop=("<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<|EOT|>"),
    special=True,
    description="DeepSeek-Coder FIM; context files as path comments inside the prefix",
)

CODELLAMA = PromptFormat(
    name="codellama",
    prefix_marker="<PRE>",
    suffix_marker="<SUF>",
    middle_marker="<MID>",
    end_of_middle="<EOT>",
    stop=("<EOT>", "<PRE>", "<SUF>", "<MID>"),
    special=True,
    description="Code Llama infilling; context files as path comments inside the prefix",
)

CODEGEMMA = PromptFormat(
    name="codegemma",
    prefix_marker="<|fim_prefix|>",
    suffix_marker="<|fim_suffix|>",
    middle_marker="<|fim_middle|>",
    end_of_middle="<|file_separator|>",
    stop=(
        "<|file_separator|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<end_of_turn>",
    ),
    special=True,
    file_marker="<|file_separator|>",
    description="CodeGemma FIM with <|file_separator|> between files",
)

FORMATS: dict[str, PromptFormat] = {
    fmt.name: fmt
    for fmt in (REPOTUNE, QWEN25_CODER, STARCODER2, DEEPSEEK_CODER, CODELLAMA, CODEGEMMA)
}


def get_format(name: str) -> PromptFormat:
    """The named format; a clear error lists the known names."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown prompt format '{name}' (known: auto, {known})") from None


def detect_format(metadata: Mapping[str, str], has_token: Callable[[str], bool]) -> str:
    """Pick a format from a GGUF's metadata and vocabulary (`has_token(text)`: is it one token?).

    Vocabulary first (it is what the model was trained with), then names for old GGUFs whose FIM
    markers are not flagged as special tokens.
    """
    arch = str(metadata.get("general.architecture", "")).lower()
    name = " ".join(
        str(metadata.get(key, "")).lower()
        for key in ("general.name", "general.basename", "general.finetune")
    )
    if has_token("<|fim_prefix|>"):
        if has_token("<|file_separator|>") or arch.startswith("gemma") or "codegemma" in name:
            return CODEGEMMA.name
        return QWEN25_CODER.name
    if has_token("<fim_prefix>"):
        return STARCODER2.name
    if has_token("<｜fim▁begin｜>"):
        return DEEPSEEK_CODER.name
    if has_token("<PRE>") or has_token("▁<PRE>"):
        return CODELLAMA.name
    compact = name.replace("-", "").replace(" ", "").replace("_", "")
    if "codellama" in compact:
        return CODELLAMA.name
    if "deepseekcoder" in compact:
        return DEEPSEEK_CODER.name
    if "starcoder" in compact:
        return STARCODER2.name
    if "qwen" in compact and "coder" in compact:
        return QWEN25_CODER.name
    if "codegemma" in compact:
        return CODEGEMMA.name
    return REPOTUNE.name


# --------------------------------------------------------------------------- built prompt


@dataclass(frozen=True)
class Segment:
    text: str
    marker: bool = False  # a format marker (special token when the format says so)


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


# --------------------------------------------------------------------------- comments

_HASH_COMMENT = {
    "py", "pyi", "sh", "bash", "zsh", "rb", "pl", "r", "yaml", "yml", "toml", "cfg", "ini",
    "conf", "mk", "cmake", "jl", "ex", "exs", "nim", "tf", "dockerfile", "ps1", "coffee",
}  # fmt: skip
_DASH_COMMENT = {"sql", "lua", "hs", "elm", "ada", "vhdl"}
_SEMI_COMMENT = {"lisp", "clj", "cljs", "el", "scm", "asm"}
_PERCENT_COMMENT = {"tex", "m", "erl"}


def comment_prefix(path: str) -> str:
    """The line-comment marker for a file, from its extension (for path headers)."""
    name = path.rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name
    if ext in _HASH_COMMENT or name in ("makefile", "dockerfile"):
        return "#"
    if ext in _DASH_COMMENT:
        return "--"
    if ext in _SEMI_COMMENT:
        return ";"
    if ext in _PERCENT_COMMENT:
        return "%"
    return "//"


# --------------------------------------------------------------------------- context


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _render_snippet(fmt: PromptFormat, snippet: ContextSnippet) -> list[Segment]:
    body = _ensure_newline(snippet.text)
    if fmt is REPOTUNE or fmt.name == REPOTUNE.name:
        return [Segment(fmt.file_marker or "", True), Segment(f"{snippet.citation}\n{body}")]
    if fmt.name == CODEGEMMA.name:
        return [Segment(f"{snippet.path}\n{body}"), Segment(fmt.file_marker or "", True)]
    if fmt.file_marker:  # qwen2.5-coder, starcoder2
        return [Segment(fmt.file_marker, True), Segment(f"{snippet.path}\n{body}")]
    # deepseek-coder, codellama: a comment naming the file, inside the prefix
    return [Segment(f"{comment_prefix(snippet.path)} {snippet.path}\n{body}")]


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
        cost = _segments_tokens(_render_snippet(fmt, snippet), count, fmt.special)
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
            cut_cost = _segments_tokens(_render_snippet(fmt, cut), count, fmt.special)
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
        context_segments.extend(_render_snippet(fmt, snippet))

    segments: list[Segment] = []
    notes: list[str] = []
    name = fmt.name
    if name == REPOTUNE.name:
        segments.extend(context_segments)
        segments += [
            Segment(fmt.suffix_marker, True),
            Segment(f"{path}\n{_ensure_newline(kept_suffix) if kept_suffix else ''}"),
            Segment(fmt.prefix_marker, True),
            Segment(f"{path}\n{kept_prefix}"),
        ]
    elif name in (QWEN25_CODER.name, STARCODER2.name):
        repo_level = bool(kept) or repo_name is not None
        if repo_level:
            segments += [Segment(fmt.repo_marker or "", True), Segment(repo_name or "repository")]
            if name == QWEN25_CODER.name:
                segments.append(Segment("\n"))
        segments.extend(context_segments)
        if name == QWEN25_CODER.name:
            if repo_level:
                segments += [Segment(fmt.file_marker or "", True), Segment(f"{path}\n")]
            segments += [Segment(fmt.prefix_marker, True), Segment(kept_prefix)]
        else:
            if repo_level:
                segments.append(Segment(fmt.file_marker or "", True))
            segments += [Segment(fmt.prefix_marker, True), Segment(f"{path}\n{kept_prefix}")]
        segments += [
            Segment(fmt.suffix_marker, True),
            Segment(kept_suffix),
            Segment(fmt.middle_marker, True),
        ]
    elif name == CODEGEMMA.name:
        segments.extend(context_segments)
        segments += [
            Segment(fmt.prefix_marker, True),
            Segment(kept_prefix),
            Segment(fmt.suffix_marker, True),
            Segment(kept_suffix),
            Segment(fmt.middle_marker, True),
        ]
    elif name in (DEEPSEEK_CODER.name, CODELLAMA.name):
        header = f"{comment_prefix(path)} {path}\n" if kept else ""
        lead = " " if name == CODELLAMA.name else ""
        tail = " " if name == CODELLAMA.name else ""
        segments += [Segment(fmt.prefix_marker, True)]
        if lead:
            segments.append(Segment(lead))
        segments.extend(context_segments)
        segments += [
            Segment(header + kept_prefix),
            Segment(tail) if tail else Segment(""),
            Segment(fmt.suffix_marker, True),
            Segment(kept_suffix),
            Segment(tail) if tail else Segment(""),
            Segment(fmt.middle_marker, True),
        ]
        if header:
            notes.append("context files as path comments inside the prefix")
    else:  # pragma: no cover - FORMATS and this function are kept in step by the tests
        raise ValueError(f"no layout for prompt format '{name}'")

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


# --------------------------------------------------------------------------- questions

ASK_SYSTEM = (
    "You are RepoTune, an assistant for one code repository. Answer the question in a few lines "
    "from the code snippets of the repository below, and from nothing else. Name the code you "
    "rely on and cite where it is defined as path:line, e.g. `parse_pin` (src/pins.py:49), then "
    "quote the lines that matter in a fenced block. If the snippets do not answer the question, "
    "say only: The indexed code does not define `NAME`. (or: The indexed code does not answer "
    "this.) Never invent a function, argument or file."
)
ASK_DOCUMENT_HEADER = (
    "Code snippets from a repository, then a question about the code and a short answer. The "
    "answer cites where the code it names is defined (path:line), quotes the lines that matter, "
    'and says "The indexed code does not define ..." when the snippets do not answer it.'
)


def fence_language(path: str) -> str:
    """The Markdown fence name of a file's language (``python`` for ``.py``)."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"py": "python", "js": "javascript", "ts": "typescript", "rs": "rust"}.get(ext, ext)


def _ask_context(snippets: Sequence[Any], max_snippet_chars: int) -> str:
    """Snippets as cited, fenced blocks, capped in total (a small model has a small context)."""
    parts: list[str] = []
    spent = 0
    for snippet in as_snippets(snippets):
        body = snippet.text.rstrip("\n")
        if spent + len(body) > max_snippet_chars and parts:
            break
        body = body[: max(0, max_snippet_chars - spent)]
        spent += len(body)
        parts.append(f"### {snippet.citation}\n```{fence_language(snippet.path)}\n{body}\n```")
    return "\n\n".join(parts) if parts else "(no code was retrieved for this question)"


def build_ask_messages(
    question: str,
    snippets: Sequence[Any],
    *,
    max_snippet_chars: int = 6000,
    system: str = ASK_SYSTEM,
) -> list[dict[str, str]]:
    """Chat messages (system + user) for a question about the codebase, for chat models.

    Snippets are cited as ``path:start-end`` in headers so the answer can point at them.
    """
    context = _ask_context(snippets, max_snippet_chars)
    user = f"Code from the repository:\n\n{context}\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


ASK_DOCUMENT_STOPS = ("\nQuestion:", "\n### ", "\n```\n\n###", "\n\n\n", "<|rt_")


def build_ask_document(
    question: str, snippets: Sequence[Any], *, max_snippet_chars: int = 6000
) -> tuple[str, tuple[str, ...]]:
    """A plain-text Q&A document for base models without a chat template (the default Gemma 3
    270M is one): instructions in a chat turn are just echoed by such a model, while a document
    that ends in "Answer:" is continued as an answer. Returns (prompt, stop strings)."""
    context = _ask_context(snippets, max_snippet_chars)
    prompt = f"{ASK_DOCUMENT_HEADER}\n\n{context}\n\nQuestion: {question.strip()}\nAnswer:"
    return prompt, ASK_DOCUMENT_STOPS
