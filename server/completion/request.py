"""What a completion is asked for and what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.prompts import BuiltPrompt
from repotune.server.completion.repo_ngrams import RepositoryTexts
from repotune.server.config import CompletionSettings
from repotune.server.index.redact import redact_buffer

# No tokenizer's token covers more characters than this (long whitespace runs included), so a
# prompt never holds buffer text farther from the cursor than tokens * this: the buffer window
# a request carries (assistant.py) and the engine reads.
MAX_CHARS_PER_TOKEN = 64


def redacted_buffer(text: str, offset: int, limits: CompletionSettings) -> tuple[str, str]:
    """The buffer's prefix and suffix around `offset`, secret-shaped lines redacted as far as a
    prompt with these budgets can reach (they never reach the model, nor its completions)."""
    return redact_buffer(
        text,
        offset,
        limits.prefix_tokens * MAX_CHARS_PER_TOKEN,
        limits.suffix_tokens * MAX_CHARS_PER_TOKEN,
    )


@dataclass(frozen=True)
class CompletionRequest:
    """One cursor: the file's text before and after it, plus retrieved snippets."""

    path: str
    language: str | None
    prefix: str
    suffix: str
    context: Sequence[ContextSnippet] = ()
    repo_name: str | None = None
    # The workspace's indexed texts, for the repository's n-grams (repo_ngrams.py).
    repository: RepositoryTexts | None = field(default=None, compare=False, repr=False)


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
