"""A request's prompt as both engines build it (request_prompt.py): budgets, the short prompt,
and cancellation during packing. Pure logic: token counts are estimated from characters."""

from __future__ import annotations

import threading

import pytest
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.formats import get_format
from repotune.server.completion.prompts import PromptCancelled
from repotune.server.completion.request import CompletionRequest
from repotune.server.completion.request_prompt import (
    answer_tokens,
    build_request_prompt,
    prompt_budget,
)
from repotune.server.config import load_settings

SNIPPET = ContextSnippet("pkg/helpers.py", "def shared_helper():\n    return 41\n", 1)
REQUEST = CompletionRequest(
    path="pkg/main.py",
    language="python",
    prefix="from pkg.helpers import shared_helper\n\nvalue = ",
    suffix="\nprint(value)\n",
    context=(SNIPPET,),
)


def count(text: str) -> int:
    return max(1, len(text) // 3)


def test_budget_is_the_settings_split_when_it_fits_and_scaled_when_not() -> None:
    settings = load_settings(None, {"model": {"context_length": 4096}})
    comp = settings.completion
    assert prompt_budget(settings, multiline=False) == (
        comp.context_tokens,
        comp.prefix_tokens,
        comp.suffix_tokens,
    )
    small = load_settings(None, {"model": {"context_length": 512}})
    context, prefix, suffix = prompt_budget(small, multiline=True)
    assert context + prefix + suffix + answer_tokens(small, True) <= 512


def test_answer_room_is_a_line_or_a_block() -> None:
    settings = load_settings(None, {"completion": {"max_tokens_line": 7, "max_tokens_block": 70}})
    assert (answer_tokens(settings, False), answer_tokens(settings, True)) == (7, 70)


def test_short_prompt_uses_the_quick_window_and_its_context_share() -> None:
    settings = load_settings(
        None,
        {"completion": {"quick_prefix_tokens": 32, "quick_suffix_tokens": 8}},
    )
    assert prompt_budget(settings, False, quick=True) == (0, 32, 8)
    fmt = get_format("repotune")
    full = build_request_prompt(fmt, count, settings, REQUEST)
    short = build_request_prompt(fmt, count, settings, REQUEST, quick=True)
    assert "shared_helper():" in full.text  # the snippet's body is in the full prompt
    assert "return 41" not in short.text  # no context share: no snippet


def test_a_cancelled_request_stops_while_its_prompt_is_packed() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PromptCancelled):
        build_request_prompt(
            get_format("repotune"), count, load_settings(None), REQUEST, False, cancel
        )
