"""What a completion is asked for and what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.prompts import BuiltPrompt


@dataclass(frozen=True)
class CompletionRequest:
    """One cursor: the file's text before and after it, plus retrieved snippets."""

    path: str
    language: str | None
    prefix: str
    suffix: str
    context: Sequence[ContextSnippet] = ()
    repo_name: str | None = None


@dataclass
class CompletionResult:
    """A completion and where its time went.

    timings (ms): tokenize (prompt building + tokenizing), prompt_eval (until the first token),
    generate (the rest of decoding), postprocess, total; the caller adds retrieval.
    """

    text: str
    multiline: bool
    timings: dict[str, float]
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    cached: bool
    format: str
    stop_reason: str = ""
    prompt: BuiltPrompt | None = field(default=None, repr=False)
    drafted_tokens: int = 0  # prompt-lookup draft tokens proposed
    accepted_tokens: int = 0  # ... and accepted by the model
    quick: bool = False  # from quick start's short prompt (quick_start.py)
