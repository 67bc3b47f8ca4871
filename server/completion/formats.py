"""Fill-in-the-middle prompt formats: each an object that owns its markers, stops and layout.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from repotune.server.languages import comment_prefix

if TYPE_CHECKING:
    from repotune.server.completion.context import ContextSnippet


@dataclass(frozen=True)
class Segment:
    text: str
    marker: bool = False  # a format marker (special token when the format says so)
    cursor: bool = False  # ends at the cursor after some typed text: token healing applies


Order = Literal["spm", "psm"]


@dataclass(frozen=True)
class PromptFormat:
    """One model family's fill-in-the-middle layout.

    `end_of_middle` is what the trainer appends after the target middle; `stop` lists the strings
    that end a completion at serving time; `special` says whether the markers are special tokens
    (tokenize them with special=True) or plain text; `layout` orders the parts and markers.
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
    layout: Layout = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    context_block: ContextBlock = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def arrange(self, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
        """The prompt's segments in this format's order, and notes on what it had to do."""
        return self.layout(self, parts)

    def render_context(self, snippet: ContextSnippet) -> list[Segment]:
        """One context snippet as this format shows another file."""
        return self.context_block(self, snippet)


@dataclass(frozen=True)
class LayoutParts:
    """What a layout arranges: the current file's kept text and the rendered context blocks."""

    path: str
    prefix: str
    suffix: str
    context: tuple[Segment, ...]
    repo_name: str | None


Layout = Callable[["PromptFormat", LayoutParts], tuple[list[Segment], list[str]]]
ContextBlock = Callable[["PromptFormat", "ContextSnippet"], list[Segment]]


def _cited_block(fmt: PromptFormat, snippet: ContextSnippet) -> list[Segment]:
    body = ensure_newline(snippet.text)
    return [Segment(fmt.file_marker or "", True), Segment(f"{snippet.citation}\n{body}")]


def _marked_block(fmt: PromptFormat, snippet: ContextSnippet) -> list[Segment]:
    body = ensure_newline(snippet.text)
    return [Segment(fmt.file_marker or "", True), Segment(f"{snippet.path}\n{body}")]


def _separated_block(fmt: PromptFormat, snippet: ContextSnippet) -> list[Segment]:
    body = ensure_newline(snippet.text)
    return [Segment(f"{snippet.path}\n{body}"), Segment(fmt.file_marker or "", True)]


def _comment_block(fmt: PromptFormat, snippet: ContextSnippet) -> list[Segment]:
    """A comment naming the file, for formats without file markers (inside the prefix)."""
    body = ensure_newline(snippet.text)
    return [Segment(f"{comment_prefix(snippet.path)} {snippet.path}\n{body}")]


def ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _suffix_first(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    """Context, then suffix, then prefix: typing only changes the prompt's end."""
    suffix = ensure_newline(parts.suffix) if parts.suffix else ""
    segments = [
        *parts.context,
        Segment(fmt.suffix_marker, True),
        Segment(f"{parts.path}\n{suffix}"),
        Segment(fmt.prefix_marker, True),
        Segment(f"{parts.path}\n{parts.prefix}", cursor=bool(parts.prefix)),
    ]
    return segments, []


def _repo_header(fmt: PromptFormat, parts: LayoutParts) -> list[Segment]:
    return [Segment(fmt.repo_marker or "", True), Segment(parts.repo_name or "repository")]


def _qwen_repo_level(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    """<|repo_name|>, a <|file_sep|>path block per file, then the current file's FIM."""
    repo_level = bool(parts.context) or parts.repo_name is not None
    segments: list[Segment] = []
    if repo_level:
        segments += [*_repo_header(fmt, parts), Segment("\n")]
    segments.extend(parts.context)
    if repo_level:
        segments += [Segment(fmt.file_marker or "", True), Segment(f"{parts.path}\n")]
    segments += [Segment(fmt.prefix_marker, True), Segment(parts.prefix, cursor=bool(parts.prefix))]
    return [*segments, *_suffix_and_middle(fmt, parts)], []


def _starcoder_repo_level(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    """<repo_name>, <file_sep>path blocks, then <file_sep><fim_prefix>path and the FIM."""
    repo_level = bool(parts.context) or parts.repo_name is not None
    segments: list[Segment] = []
    if repo_level:
        segments += _repo_header(fmt, parts)
    segments.extend(parts.context)
    if repo_level:
        segments.append(Segment(fmt.file_marker or "", True))
    segments += [
        Segment(fmt.prefix_marker, True),
        Segment(f"{parts.path}\n{parts.prefix}", cursor=bool(parts.prefix)),
    ]
    return [*segments, *_suffix_and_middle(fmt, parts)], []


def _suffix_and_middle(fmt: PromptFormat, parts: LayoutParts) -> list[Segment]:
    return [
        Segment(fmt.suffix_marker, True),
        Segment(parts.suffix),
        Segment(fmt.middle_marker, True),
    ]


def _files_then_fim(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    """Context blocks, then prefix-suffix-middle for the current file."""
    segments = [
        *parts.context,
        Segment(fmt.prefix_marker, True),
        Segment(parts.prefix, cursor=bool(parts.prefix)),
    ]
    return [*segments, *_suffix_and_middle(fmt, parts)], []


def _context_in_prefix(
    fmt: PromptFormat, parts: LayoutParts, pad: str
) -> tuple[list[Segment], list[str]]:
    """No file markers: context files become path comments inside the prefix."""
    header = f"{comment_prefix(parts.path)} {parts.path}\n" if parts.context else ""
    segments = [
        Segment(fmt.prefix_marker, True),
        Segment(pad),
        *parts.context,
        Segment(header + parts.prefix, cursor=bool(parts.prefix)),
        Segment(pad),
        Segment(fmt.suffix_marker, True),
        Segment(parts.suffix),
        Segment(pad),
        Segment(fmt.middle_marker, True),
    ]
    notes = ["context files as path comments inside the prefix"] if header else []
    return segments, notes


def _deepseek_infill(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    return _context_in_prefix(fmt, parts, pad="")


def _codellama_infill(fmt: PromptFormat, parts: LayoutParts) -> tuple[list[Segment], list[str]]:
    return _context_in_prefix(fmt, parts, pad=" ")  # Code Llama's markers are spaced


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
    layout=_suffix_first,
    context_block=_cited_block,
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
    layout=_qwen_repo_level,
    context_block=_marked_block,
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
    layout=_starcoder_repo_level,
    context_block=_marked_block,
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
    layout=_deepseek_infill,
    context_block=_comment_block,
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
    layout=_codellama_infill,
    context_block=_comment_block,
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
    layout=_files_then_fim,
    context_block=_separated_block,
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


def choose_format(
    metadata: Mapping[str, str], has_token: Callable[[str], bool], setting: str = "auto"
) -> PromptFormat:
    """The format `setting` names, or the one detected from the model when it is "auto"."""
    if setting != "auto":
        return get_format(setting)
    return get_format(detect_format(metadata, has_token))
