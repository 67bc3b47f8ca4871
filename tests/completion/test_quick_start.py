"""Quick start (issue 14): a new place's first answer from a short prompt while the full prompt
is evaluated in the background; the budget logic alone, then with the real default model."""

from __future__ import annotations

import json.encoder as json_encoder
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.prompt_speed import PromptSpeed
from repotune.server.completion.quick_start import (
    SLOW_NEW_PLACE_S,
    new_place_seconds,
    quick_budget,
    quick_start_on,
    slot_key,
    wants_quick_start,
)
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import Settings, load_settings
from repotune.server.llm.kv_slots import KvSlots, _Slot

ENCODER = Path(json_encoder.__file__).read_text(encoding="utf-8")
LINE = "        chunks = self.iterencode(o, _one_shot=True)"
SNIPPET = ContextSnippet("json/decoder.py", "class JSONDecoder(object):\n    pass\n", 1)
QUICK = {
    "quick_start": True,
    "quick_prefix_tokens": 64,
    "quick_suffix_tokens": 16,
    "quick_start_min_tokens": 64,
}


def completion_settings(**completion: object):  # type: ignore[no-untyped-def]
    return load_settings(None, {"completion": completion}).completion


# --------------------------------------------------------------------------- pure logic


def test_the_short_prompt_has_no_context_and_the_quick_window() -> None:
    assert quick_budget(completion_settings(), 4096, 48) == (0, 256, 64)
    # Never more than the full prompt's own window.
    narrow = completion_settings(prefix_tokens=64, suffix_tokens=8)
    assert quick_budget(narrow, 4096, 48) == (0, 64, 8)
    # Scaled down like the full budget when the model's window is small.
    context, prefix, suffix = quick_budget(completion_settings(), 160, 48)
    assert context == 0 and prefix + suffix <= 160 - 64 - 48 and prefix >= 16


def test_a_context_share_is_never_more_than_the_full_prompts() -> None:
    assert quick_budget(completion_settings(quick_context_tokens=128), 4096, 48) == (128, 256, 64)
    capped = completion_settings(quick_context_tokens=900, context_tokens=300)
    assert quick_budget(capped, 4096, 48)[0] == 300


def test_quick_start_only_when_the_full_prompt_is_far_from_ready() -> None:
    on = completion_settings(quick_start=True, quick_start_min_tokens=256)
    assert wants_quick_start(on, prompt_tokens=1100, cached_tokens=0)
    assert wants_quick_start(on, prompt_tokens=1100, cached_tokens=843)
    assert not wants_quick_start(on, prompt_tokens=1100, cached_tokens=844)


def test_auto_turns_quick_start_on_only_where_a_whole_new_place_prompt_is_slow() -> None:
    auto = completion_settings()  # the default
    assert auto.quick_start == "auto"
    budget = 256 + 512 + 64
    assert new_place_seconds(auto, 416) == pytest.approx(2.0)
    slow, fast = budget / (SLOW_NEW_PLACE_S + 0.1), budget / (SLOW_NEW_PLACE_S - 0.1)
    assert quick_start_on(auto, slow) and not quick_start_on(auto, fast)
    assert not quick_start_on(auto, None)  # nothing measured yet: as without it
    assert quick_start_on(auto, None, was_on=True)  # ... and no change without a measurement
    # Once on, it stays on until the machine is clearly faster (no switching at the edge).
    assert quick_start_on(auto, fast, was_on=True)
    assert not quick_start_on(auto, budget / (SLOW_NEW_PLACE_S * 0.85), was_on=True)
    # A smaller budget is a faster new place on the same machine.
    assert not quick_start_on(completion_settings(context_tokens=0, prefix_tokens=256), slow)
    # Set explicitly, the speed does not matter.
    assert quick_start_on(completion_settings(quick_start=True), fast)
    assert not quick_start_on(completion_settings(quick_start=False), 1.0)


def test_the_prompt_speed_is_what_the_machine_does_when_the_cores_are_free() -> None:
    speed = PromptSpeed()
    assert speed.tokens_per_s is None
    speed.record(8, 0.001)  # too short to say anything: ignored
    speed.record(64, 0.2)
    assert speed.tokens_per_s is None  # not enough measured yet
    speed.record(128, 0.4)
    assert speed.tokens_per_s == pytest.approx(320)
    # Half the evaluations slowed by other work on the cores (a query embedding): no matter.
    for _ in range(7):
        speed.record(64, 0.2)
        speed.record(64, 0.5)
    assert speed.tokens_per_s == pytest.approx(320)
    for _ in range(16):  # the machine stays busy: the rate follows
        speed.record(64, 0.4)
    assert speed.tokens_per_s == pytest.approx(160)


def test_the_two_prompts_keep_apart_kv_slots() -> None:
    assert slot_key("a.py", False) == "a.py"
    assert slot_key("a.py", True) != "a.py"
    assert slot_key("a.py", True) != slot_key("b.py", True)


def test_best_start_is_the_longest_prefix_any_kv_cache_holds() -> None:
    llm = SimpleNamespace(input_ids=np.array([1, 2, 3, 4, 0, 0], dtype=np.intc), n_tokens=4)
    slots = KvSlots(2)
    assert slots.best_start(llm, [1, 2, 9]) == 2  # the live cache
    slots._slots["b.py"] = _Slot(np.array([1, 2, 9, 9], dtype=np.intc), b"")
    assert slots.best_start(llm, [1, 2, 9, 9, 5]) == 4  # a saved one holds more
    assert KvSlots(0).best_start(llm, [1, 2, 3, 4, 5]) == 4


# --------------------------------------------------------------------------- real model


def request_at(typed: str) -> CompletionRequest:
    """`typed` of LINE typed so far, the rest of the line not yet there (typing inserts)."""
    cut = ENCODER.index(LINE)
    prefix = ENCODER[:cut] + typed
    suffix = ENCODER[cut + len(LINE) :]
    return CompletionRequest("json/encoder.py", "python", prefix, suffix, (SNIPPET,), "cpython")


def settings_with(**completion: object) -> Settings:
    return load_settings(
        None,
        {
            "completion": {
                "context_tokens": 64,
                "prefix_tokens": 384,
                "suffix_tokens": 64,
                "max_tokens_line": 16,
                "time_cap_ms": 30_000,
                **completion,
            },
            "model": {"context_length": 1024},
        },
    )


def engine_with(**completion: object) -> CompletionEngine:
    engine = CompletionEngine(settings_with(**completion))
    assert engine.wait_ready(300), engine.load_error
    return engine


@pytest.fixture(scope="module")
def quick_engine(generator_model) -> Iterator[CompletionEngine]:
    instance = engine_with(**QUICK)
    yield instance
    instance.close()


@pytest.fixture
def engine(quick_engine: CompletionEngine) -> CompletionEngine:
    """The module's quick-start engine with nothing cached: each test starts at a new place."""
    quick_engine.forget()
    return quick_engine


@pytest.mark.slow
def test_a_new_place_is_answered_quickly_then_from_the_full_prompt(
    engine: CompletionEngine,
) -> None:
    first = engine.complete(request_at("        chunks = "))
    assert first is not None and first.quick
    assert first.prompt is not None and not first.prompt.snippets  # no retrieved context
    assert first.prompt_tokens < 64 + 16 + 32
    # The full prompt is evaluated in the background meanwhile ...
    assert engine.wait_ahead(120)
    engine.cache.clear()
    # ... so the next keystroke's request gets it, re-evaluating only the typed tokens.
    second = engine.complete(request_at("        chunks = s"))
    assert second is not None and not second.quick
    assert second.prompt is not None and second.prompt.snippets == (SNIPPET,)
    assert second.prompt_tokens > 300
    assert second.reused_tokens >= second.prompt_tokens - 8


@pytest.mark.slow
def test_work_ahead_answers_quickly_first_and_then_prefills_the_full_prompt(
    engine: CompletionEngine,
) -> None:
    before = dict(engine.ahead_stats)
    request = request_at("        chunks = self.")
    assert engine.prefill(request)
    assert engine.wait_ahead(120)
    assert engine.ahead_stats["quick_answers"] == before["quick_answers"] + 1
    # The full prompt was evaluated after the quick answer (all but its last token).
    assert engine.ahead_stats["prefill_tokens"] - before["prefill_tokens"] > 300
    cached = engine.complete(request)
    assert cached is not None and cached.cached and cached.quick
    engine.cache.clear()
    full = engine.complete(request)
    assert full is not None and not full.quick
    assert full.reused_tokens >= full.prompt_tokens - 2


@pytest.mark.slow
def test_going_back_to_the_short_prompt_restores_its_kv_cache(
    engine: CompletionEngine,
) -> None:
    assert engine.complete(request_at("        chunks = ")) is not None
    # The full prompt's evaluation is stopped early by a new request (the next keystroke) ...
    engine.ahead.worker.cancel()
    engine.cache.clear()
    again = engine.complete(request_at("        chunks = se"))
    assert again is not None and again.quick
    # ... which finds the short prompt's cache saved and evaluates only what was typed.
    assert again.reused_tokens >= again.prompt_tokens - 8


@pytest.mark.slow
def test_a_context_share_puts_the_top_snippets_in_the_short_prompt(
    engine: CompletionEngine,
) -> None:
    engine.reload(settings_with(**QUICK, quick_context_tokens=48))
    try:
        first = engine.complete(request_at("        chunks = "))
        assert first is not None and first.quick
        assert first.prompt is not None and first.prompt.snippets == (SNIPPET,)
        assert first.prompt_tokens < 48 + 64 + 16 + 32
    finally:
        engine.reload(settings_with(**QUICK))


@pytest.mark.slow
def test_auto_quick_start_follows_the_measured_prompt_speed(generator_model) -> None:
    engine = engine_with(**{**QUICK, "quick_start": "auto"})
    try:
        # Nothing measured yet: a new place waits for the full prompt, and its evaluation is
        # measured (the real model's speed on this machine).
        for _ in range(2):  # two new places: enough to measure
            engine.forget()
            full = engine.complete(request_at("        chunks = "))
            assert full is not None and not full.quick
        measured = engine.prompt_speed.tokens_per_s
        assert measured is not None and measured > 0
        assert engine.status()["prompt_speed"]["tokens_per_s"] == round(measured)
        # A machine this slow (a whole 512-token prompt in 10 s) gets quick start ...
        for _ in range(16):
            engine.prompt_speed.record(512, 10.0)
        assert engine.status()["prompt_speed"]["quick_start_on"] is True
        engine.forget()
        slow = engine.complete(request_at("        chunks = "))
        assert slow is not None and slow.quick
        # ... and one this fast does not.
        for _ in range(16):
            engine.prompt_speed.record(512, 0.1)
        engine.forget()
        fast = engine.complete(request_at("        chunks = "))
        assert fast is not None and not fast.quick
        assert engine.status()["prompt_speed"]["quick_start_on"] is False
    finally:
        engine.close()


@pytest.mark.slow
def test_without_quick_start_a_new_place_waits_for_the_full_prompt(generator_model) -> None:
    engine = engine_with(quick_start=False)
    try:
        result = engine.complete(request_at("        chunks = "))
        assert result is not None and not result.quick
        assert result.prompt is not None and result.prompt.snippets == (SNIPPET,)
    finally:
        engine.close()
