"""A context block kept across places (`completion.stable_context`, issue 14): the first
suggestions at a new place use the block whose KV cells are already computed, the place's own
snippets are evaluated in the background and adopted once ready. Pure rules first, then the
real default model."""

from __future__ import annotations

import json.encoder as json_encoder
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SMALL_COMPLETION
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.request import CompletionRequest
from repotune.server.completion.sticky import StickyContext
from repotune.server.completion.work_ahead import REFRESH_AFTER_IDLE_S
from repotune.server.config import CompletionSettings, load_settings

SOURCE = Path(json_encoder.__file__).read_text(encoding="utf-8")
PATH = "json/encoder.py"
BLOCK_A = (
    ContextSnippet("json/decoder.py", "class JSONDecoder:\n    def decode(self, s):\n", 10),
    ContextSnippet("json/scanner.py", "def make_scanner(context):\n    parse_object = 1\n", 3),
)
TOOL = ContextSnippet("json/tool.py", "def main():\n    parser = argparse.ArgumentParser()\n", 12)
# A place whose most relevant snippet the kept block already shows (BLOCK_A's scanner).
BLOCK_B = (BLOCK_A[1], TOOL)
STABLE = CompletionSettings(stable_context=True)


def at(marker: str, context: tuple[ContextSnippet, ...], keep: str = "") -> CompletionRequest:
    """The cursor just before `marker` in json/encoder.py (plus `keep` of it typed)."""
    cut = SOURCE.index(marker)
    return CompletionRequest(
        PATH, "python", SOURCE[:cut] + keep, SOURCE[cut + len(keep) :], context, "cpython"
    )


def request_at(
    line: int, context: tuple[ContextSnippet, ...], path: str = PATH
) -> CompletionRequest:
    return CompletionRequest(path, "python", "x\n" * line, "", context)


# --------------------------------------------------------------------------- the rules


def test_a_new_place_keeps_the_block_and_its_own_snippets_wait() -> None:
    sticky = StickyContext(stable=True)
    assert sticky.apply(STABLE, request_at(10, BLOCK_A)).context == BLOCK_A
    moved = request_at(200, BLOCK_B)
    assert sticky.apply(STABLE, moved).context == BLOCK_A  # kept
    assert sticky.kept_blocks == 1
    waiting = sticky.fresh_for(STABLE, replace(moved, prefix=moved.prefix + "y"))
    assert waiting is not None and waiting.context == BLOCK_B
    assert sticky.fresh_for(STABLE, request_at(10, ())) is None  # not near the waiting place
    assert sticky.adopt(BLOCK_B)
    assert sticky.apply(STABLE, request_at(201, ())).context == BLOCK_B
    assert sticky.fresh_for(STABLE, request_at(201, ())) is None


def test_a_block_that_waited_too_long_is_not_adopted() -> None:
    sticky = StickyContext(stable=True)
    sticky.apply(STABLE, request_at(10, BLOCK_A))
    sticky.apply(STABLE, request_at(200, BLOCK_B))
    sticky.apply(STABLE, request_at(400, (BLOCK_B[0], BLOCK_A[0])))  # moved on again
    assert not sticky.adopt(BLOCK_B)
    assert sticky.apply(STABLE, request_at(401, ())).context == BLOCK_A


@pytest.mark.parametrize(
    ("stable", "completion"),
    [
        (False, STABLE),  # an endpoint's engine: its cache is out of reach
        (True, CompletionSettings(stable_context=False)),
        (True, CompletionSettings(stable_context=True, sticky_context=False)),
    ],
)
def test_without_stable_context_a_new_place_gets_its_own(
    stable: bool, completion: CompletionSettings
) -> None:
    sticky = StickyContext(stable=stable)
    sticky.apply(completion, request_at(10, BLOCK_A))
    assert sticky.apply(completion, request_at(200, BLOCK_B)).context == BLOCK_B
    assert sticky.fresh_for(completion, request_at(200, ())) is None


def test_a_block_without_the_places_top_snippets_is_not_kept() -> None:
    sticky = StickyContext(stable=True)
    sticky.apply(STABLE, request_at(10, BLOCK_A))
    # The scanner is in the block, but only third among the place's snippets.
    own = (TOOL, ContextSnippet("json/tool.py", "def usage():\n    pass\n", 40), BLOCK_A[1])
    assert sticky.apply(STABLE, request_at(200, own)).context == own
    assert sticky.kept_blocks == 0
    assert sticky.fresh_for(STABLE, request_at(200, ())) is None


def test_a_place_without_snippets_takes_none() -> None:
    sticky = StickyContext(stable=True)
    sticky.apply(STABLE, request_at(10, BLOCK_A))
    assert sticky.apply(STABLE, request_at(200, ())).context == ()
    assert sticky.kept_blocks == 0


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def engine(generator_model) -> Iterator[CompletionEngine]:
    settings = load_settings(
        None,
        {
            "completion": {
                **SMALL_COMPLETION,
                "time_cap_ms": 20_000,
                "stable_context": True,
                "prefill": False,  # only the refresh works in the background here
            },
            "model": {"context_length": 1024},
        },
    )
    instance = CompletionEngine(settings)
    assert instance.wait_ready(300), instance.load_error
    yield instance
    instance.close()


FIRST = "        chunks = self.iterencode(o, _one_shot=True)"
SECOND = "        if (_one_shot and c_make_encoder is not None"


@pytest.mark.slow
def test_a_new_place_is_answered_from_the_kept_block_then_gets_its_own(
    engine: CompletionEngine,
) -> None:
    engine.forget()
    first = engine.complete(at(FIRST, BLOCK_A, "        c"))
    assert first is not None and first.prompt is not None, engine.last_reason
    assert engine.wait_ahead(120)
    engine.cache.clear()
    # Far from there: the block stays, so its KV cells are kept and only the file part is new.
    moved = at(SECOND, BLOCK_B, "        if (")
    before = engine.status()["ahead"]
    second = engine.complete(moved)
    assert second is not None and second.prompt is not None, engine.last_reason
    assert second.prompt.snippets == BLOCK_A
    # (context_tokens also counts the file part's markers and path, evaluated anew)
    assert second.reused_tokens >= second.prompt.context_tokens - 16
    # The place's own snippets are evaluated in the background and adopted ...
    assert engine.wait_ahead(120)
    ahead = engine.status()["ahead"]
    assert ahead["refreshes"] == before["refreshes"] + 1, ahead
    assert ahead["adopted_blocks"] == before["adopted_blocks"] + 1, ahead
    # ... so typing on uses them with the cache already warm.
    engine.cache.clear()
    typed = replace(moved, prefix=moved.prefix + "_", context=())  # the suffix stays
    third = engine.complete(typed)
    assert third is not None and third.prompt is not None, engine.last_reason
    assert third.prompt.snippets == BLOCK_B
    assert third.reused_tokens >= third.prompt_tokens - 8


@pytest.mark.slow
def test_typing_while_the_fresh_block_is_evaluated_keeps_a_warm_cache(
    engine: CompletionEngine,
) -> None:
    engine.forget()
    adopted = engine.status()["ahead"]["adopted_blocks"]
    assert engine.complete(at(FIRST, BLOCK_A, "        c")) is not None
    assert engine.wait_ahead(120)
    engine.cache.clear()
    moved = at(SECOND, BLOCK_B, "        if (")
    assert engine.complete(moved) is not None, engine.last_reason
    # The pause lets the fresh block's evaluation start (after REFRESH_AFTER_IDLE_S); the next
    # keystroke stops it half-way (on a slow host) and goes on with the kept block, whose cache
    # was saved before that evaluation overwrote it; on a fast host the block was adopted.
    time.sleep(REFRESH_AFTER_IDLE_S + 0.2)
    typed = replace(moved, prefix=moved.prefix + "_", context=())  # the suffix stays
    third = engine.complete(typed)
    assert third is not None and third.prompt is not None, engine.last_reason
    now_adopted = engine.status()["ahead"]["adopted_blocks"] - adopted
    assert third.prompt.snippets == (BLOCK_B if now_adopted else BLOCK_A)
    assert third.reused_tokens >= third.prompt_tokens - 8
