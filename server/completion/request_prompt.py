"""A completion request's prompt, built alike by the in-process and the endpoint engines.

The settings' token budget (or quick start's short one, quick_start.py) is scaled down to fit
the context window with room for the answer, and prompts.py packs the request into it; every
token count checks the request's cancel event, so a cancelled request stops during packing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from repotune.server.completion.formats import PromptFormat
from repotune.server.completion.prompts import (
    PREFIX_QUANTUM,
    BuiltPrompt,
    PromptCancelled,
    build_fim_prompt,
    scaled_budget,
)
from repotune.server.completion.quick_start import quick_budget
from repotune.server.completion.request import CompletionRequest
from repotune.server.completion.tokens import CountTokens
from repotune.server.config import Settings
from repotune.server.llm.healing import NO_HEALING, Healing


@dataclass(frozen=True)
class PreparedPrompt:
    """A full prompt built and tokenized once: deciding about it (quick start) and evaluating
    it ahead must not pay for building it again when it is then answered."""

    prompt: BuiltPrompt
    tokens: list[int]
    healing: Healing = NO_HEALING  # what the tokens leave out before the cursor (healing.py)


def answer_tokens(settings: Settings, multiline: bool) -> int:
    """The most tokens an answer may take: a block's or a line's."""
    completion = settings.completion
    return completion.max_tokens_block if multiline else completion.max_tokens_line


def prompt_budget(settings: Settings, multiline: bool, quick: bool = False) -> tuple[int, int, int]:
    """(context, prefix, suffix) tokens: the settings' split (or the short prompt's), scaled
    down to fit the context window if need be."""
    window = settings.model.context_length
    generated = answer_tokens(settings, multiline)
    if quick:
        return quick_budget(settings.completion, window, generated)
    return scaled_budget(settings.completion, window, generated)


def build_request_prompt(
    fmt: PromptFormat,
    count_tokens: CountTokens,
    settings: Settings,
    request: CompletionRequest,
    multiline: bool = False,
    cancel: threading.Event | None = None,
    quick: bool = False,
) -> BuiltPrompt:
    """`request`'s prompt in `fmt` (the short one when `quick`); raises PromptCancelled as soon
    as `cancel` is set."""

    def count(text: str) -> int:
        if cancel is not None and cancel.is_set():
            raise PromptCancelled
        return count_tokens(text)

    budget = prompt_budget(settings, multiline, quick)
    return build_fim_prompt(
        fmt,
        path=request.path,
        prefix=request.prefix,
        suffix=request.suffix,
        context=request.context if budget[0] > 0 else (),
        budget=budget,
        count_tokens=count,
        repo_name=request.repo_name,
        prefix_quantum=PREFIX_QUANTUM,
    )
