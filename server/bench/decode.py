"""`repotune bench decode [PATH]`: what an adapter costs the generator, as one JSON object.

The same prompts (windows of PATH's Python files, the pinned requests corpus by default) go to the
generator loaded once per adapter (`none` = the bare base, `default` = the shipped adapter, or a
GGUF path), alternating which goes first. Each prompt is evaluated from an empty KV cache, then
a fixed number of tokens is decoded greedily without prompt lookup, so the figures are llama.cpp's
prompt evaluation and decoding speeds, not the engine's caching. `model_check_ms` is the check a
model file given by path gets before every load (its GGUF layout walked, models.validate_gguf),
timed on the generator's file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from repotune.server.bench.complete import DEFAULT_CORPUS
from repotune.server.bench.record import run_machine
from repotune.server.bench.stats import p50_p95
from repotune.server.completion.model import LoadedModel, load_model
from repotune.server.config import Settings, settings_with
from repotune.server.corpora import ensure_corpus
from repotune.server.llm.decoding import greedy_tokens
from repotune.server.models import validate_gguf

MODEL_CHECKS = 5


def prompt_windows(root: Path, count: int, tokens: int, model: LoadedModel) -> list[list[int]]:
    """`count` prompts of exactly `tokens` tokens, one per file (in path order) long enough."""
    windows: list[list[int]] = []
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        ids = model.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) >= tokens:
            windows.append(list(ids[:tokens]))
        if len(windows) == count:
            break
    if not windows:
        raise ValueError(f"no Python file in {root} has {tokens} tokens")
    return windows


def time_one(model: LoadedModel, prompt: list[int], new_tokens: int) -> dict[str, float]:
    """Prompt evaluation and decoding speed (tokens/s) of one prompt from an empty KV cache."""
    llm = model.llm
    llm.reset()
    llm._ctx.kv_cache_clear()  # an empty cache: nothing of the previous prompt is reused
    counters = {"reused": 0, "drafted": 0, "accepted": 0}
    started = time.perf_counter()
    generated = greedy_tokens(llm, prompt, lookup=False, counters=counters)
    next(generated)  # the prompt is evaluated and the first token chosen
    prompt_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens - 1):
        next(generated)
    decode_s = time.perf_counter() - started
    generated.close()
    return {
        "prompt_tokens_per_s": len(prompt) / prompt_s,
        "decode_tokens_per_s": (new_tokens - 1) / decode_s,
    }


def run_bench_decode(
    workspace: Path | None,
    settings: Settings,
    adapters: list[str],
    prompts: int = 12,
    prompt_tokens: int = 1000,
    new_tokens: int = 48,
) -> dict[str, Any]:
    root = workspace if workspace is not None else ensure_corpus(DEFAULT_CORPUS)
    loaded = {
        label: load_model(settings_with(settings, {"model": {"adapter": label}}, "bench decode"))
        for label in adapters
    }
    first = next(iter(loaded.values()))
    windows = prompt_windows(root, prompts, prompt_tokens, first)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in adapters}
    for index, prompt in enumerate(windows):
        order = adapters if index % 2 == 0 else list(reversed(adapters))
        for label in order:
            runs[label].append(time_one(loaded[label], prompt, new_tokens))
    check_ms = []
    for _ in range(MODEL_CHECKS):
        started = time.perf_counter()
        validate_gguf(Path(first.info["model"]))
        check_ms.append((time.perf_counter() - started) * 1000)
    results = {}
    for label, timings in runs.items():
        info = loaded[label].info
        results[label] = {
            "adapter": info["adapter"],
            "prompt_tokens_per_s": p50_p95([t["prompt_tokens_per_s"] for t in timings]),
            "decode_tokens_per_s": p50_p95([t["decode_tokens_per_s"] for t in timings]),
        }
    report = {
        "benchmark": "decode",
        "workspace": str(root),
        "model": first.info["model"],
        "threads": first.info["threads"],
        "cpu_extra_buffers": first.info["cpu_extra_buffers"],
        "gpu_layers": first.info["gpu_layers"],
        "prompts": len(windows),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "adapters": results,
        "model_check_ms": p50_p95(check_ms),
        "machine": run_machine(),
    }
    print(json.dumps(report, indent=2))
    return report
