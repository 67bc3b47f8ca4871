"""Quick start: the first answer at a new place comes from a short prompt.

A new place's full prompt (retrieved context, then up to 512 prefix and 64 suffix tokens) takes
over a second to evaluate on a small CPU, and a cursor that moves somewhere new shares little of it
with the KV cache. With `completion.quick_start`, a request whose full prompt still needs more
than `quick_start_min_tokens` evaluated is answered from a short prompt instead (the lines
nearest the cursor and, with `quick_context_tokens`, the most relevant retrieved snippets:
`quick_budget`) while the full prompt is evaluated in the background; once it is ready,
requests there get the full prompt's answers again. The two prompts' KV caches are kept apart
(llm/kv_slots.py saves one while the other is live, keyed by `slot_key`), so switching between
them copies a cache instead of evaluating it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repotune.server.completion.prompts import scaled_budget

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings

# A whole new-place prompt slower than this: a new place's first suggestion is expected over
# 0.7 s p50 even with work ahead (README: Benchmarks, hosts compared by their speed).
SLOW_NEW_PLACE_S = 1.8
# "auto" turns quick start off again only below this share of SLOW_NEW_PLACE_S, so a machine
# whose speed hovers at the edge does not switch on every measurement.
AUTO_OFF_SHARE = 0.9

# Appended to a file's path to key the short prompt's saved KV cache (no path holds a NUL).
QUICK_SLOT = "\x00quick"


def slot_key(path: str, quick: bool) -> str:
    """The KV slot of `path`'s full prompt, or of its short one."""
    return path + QUICK_SLOT if quick else path


def quick_budget(
    completion: CompletionSettings, window: int, generated: int
) -> tuple[int, int, int]:
    """(context, prefix, suffix) tokens of the short prompt: the quick window and context
    share (never more than the full one's), scaled down to fit `window` like the full budget."""
    short = completion.model_copy(
        update={
            "context_tokens": min(completion.quick_context_tokens, completion.context_tokens),
            "prefix_tokens": min(completion.quick_prefix_tokens, completion.prefix_tokens),
            "suffix_tokens": min(completion.quick_suffix_tokens, completion.suffix_tokens),
        }
    )
    return scaled_budget(short, window, generated)


def new_place_seconds(completion: CompletionSettings, tokens_per_s: float) -> float:
    """How long a whole prompt of the configured budget takes to evaluate at `tokens_per_s`."""
    return completion.prompt_budget_tokens / tokens_per_s


def quick_start_on(
    completion: CompletionSettings, tokens_per_s: float | None, was_on: bool = False
) -> bool:
    """Is quick start on: as set, or with "auto" where the measured speed (None: not measured
    yet) makes a new place slow; `was_on`: what the last call said (for the margin)."""
    if completion.quick_start != "auto":
        return bool(completion.quick_start)
    if tokens_per_s is None:
        return was_on
    limit = SLOW_NEW_PLACE_S * (AUTO_OFF_SHARE if was_on else 1.0)
    return new_place_seconds(completion, tokens_per_s) > limit


def wants_quick_start(
    completion: CompletionSettings, prompt_tokens: int, cached_tokens: int
) -> bool:
    """With quick start on: is the full prompt (`prompt_tokens` long, its first
    `cached_tokens` already in a KV cache) too far from ready to wait for?"""
    return prompt_tokens - cached_tokens > completion.quick_start_min_tokens
