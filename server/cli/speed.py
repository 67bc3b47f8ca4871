"""`repotune doctor --speed`: how fast this machine runs the generator, and what that means for
the first suggestion at a new place.

Where the cursor arrives somewhere new, the whole prompt (retrieved context, the file around
the cursor) is evaluated before the first token; that time follows the machine's prompt speed,
which varies between machines of the same size. This measures it with the configured model,
adapter and threads on a prompt of the configured budget, and says what quick start does
there (by the rule the engine follows with `quick_start = "auto"`, quick_start.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from repotune.server.completion.model import load_model
from repotune.server.completion.quick_start import SLOW_NEW_PLACE_S, quick_start_on
from repotune.server.config import Settings
from repotune.server.llm.decoding import greedy_tokens

DECODE_TOKENS = 32


def sample_code() -> str:
    """Code to evaluate: RepoTune's own source (shipped with it; nothing read from a workspace)."""
    package = Path(__file__).resolve().parents[1]
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((package / "completion").glob("*.py"))
    )


def measure_speed(settings: Settings, code: str | None = None) -> dict[str, Any]:
    """Load the generator as the server does, evaluate a prompt of the full completion budget
    from scratch, then decode greedily; the rates and what they mean at a new place.
    Raises ModelError when the model cannot be loaded."""
    completion = settings.completion
    loaded = load_model(settings)
    llm = loaded.llm
    try:
        room = llm.n_ctx() - DECODE_TOKENS - 1  # a budget beyond the context window is cut
        tokens = llm.tokenize((code or sample_code()).encode("utf-8"), add_bos=True)
        tokens = tokens[: min(completion.prompt_budget_tokens, room)]
        counters = {"reused": 0, "drafted": 0, "accepted": 0}
        started = time.perf_counter()
        stream = greedy_tokens(llm, tokens, False, counters)
        next(stream)  # the first token comes once the whole prompt is evaluated
        prompt_s = time.perf_counter() - started
        decode_started = time.perf_counter()
        for _ in range(DECODE_TOKENS):  # the window keeps room for them all
            next(stream)
        decode_s = time.perf_counter() - decode_started
    finally:
        llm.close()
    return {
        "prompt_tokens": len(tokens),
        "prompt_seconds": round(prompt_s, 3),
        "prompt_tokens_per_s": round(len(tokens) / prompt_s),
        "decode_tokens_per_s": round(DECODE_TOKENS / decode_s, 1),
        "threads": loaded.info["threads"],
        "gpu_layers": loaded.info["gpu_layers"],
        "adapter": loaded.info["adapter"],
        "slow_new_place": prompt_s > SLOW_NEW_PLACE_S,
        "quick_start": completion.quick_start,
        # The engine's own rule, from the budget's speed (this prompt may be cut to the window).
        "quick_start_on": quick_start_on(completion, len(tokens) / prompt_s),
    }


def format_speed(speed: dict[str, Any]) -> list[str]:
    """The doctor's lines for a speed report."""
    lines = [
        f"speed       prompt {speed['prompt_tokens_per_s']} tokens/s, decoding "
        f"{speed['decode_tokens_per_s']} tokens/s ({speed['threads']} threads, "
        f"{speed['gpu_layers']} layers on a GPU)",
        f"{'':<11} a whole new-place prompt ({speed['prompt_tokens']} tokens): "
        f"{speed['prompt_seconds']:.2f} s (work ahead starts it while the cursor rests)",
    ]
    if not speed["slow_new_place"]:
        return lines
    if speed["quick_start"] is False:
        lines.append(
            f'{"":<11} slow for a new place: set completion.quick_start = "auto" (or true) '
            "for a first suggestion from a short prompt (faster, right less often)"
        )
    elif speed["quick_start_on"]:
        lines.append(
            f"{'':<11} slow for a new place: quick start answers first from a short prompt "
            f"(completion.quick_start = {json.dumps(speed['quick_start'])})"
        )
    return lines
