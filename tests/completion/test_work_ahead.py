"""Work ahead of the request (issue 14), with the real default model: a background prefill that
the request then keeps, the first line of a block first with the rest finished in the background,
and the KV caches of recent files kept for going back."""

from __future__ import annotations

import json.decoder as json_decoder
import json.encoder as json_encoder
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from repotune.server.completion.ahead import AheadWorker
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.prompts import BuiltPrompt
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import load_settings

pytestmark = pytest.mark.slow

ENCODER = Path(json_encoder.__file__).read_text(encoding="utf-8")
DECODER = Path(json_decoder.__file__).read_text(encoding="utf-8")
SETTINGS = {
    "completion": {
        "context_tokens": 64,
        "prefix_tokens": 256,
        "suffix_tokens": 64,
        "max_tokens_line": 16,
        "max_tokens_block": 40,
        "time_cap_ms": 30_000,
        "cache_size": 64,
        "quick_start": False,  # not by the host's speed (test_quick_start.py covers "auto")
    },
    "model": {"context_length": 1024},
}


def at(source: str, path: str, marker: str, keep: str = "") -> CompletionRequest:
    """The cursor just before `marker` (plus `keep` of it typed)."""
    cut = source.index(marker)
    return CompletionRequest(
        path, "python", source[:cut] + keep, source[cut + len(keep) :], (), "cpython"
    )


def empty_line(source: str, path: str, before: str) -> CompletionRequest:
    """An empty, indented line inserted just before the line `before`."""
    cut = source.index(before)
    indent = before[: len(before) - len(before.lstrip())]
    return CompletionRequest(path, "python", source[:cut] + indent, "\n" + source[cut:], (), "x")


def engine_with(**completion: object) -> CompletionEngine:
    settings = load_settings(
        None, {**SETTINGS, "completion": {**SETTINGS["completion"], **completion}}
    )
    engine = CompletionEngine(settings)
    assert engine.wait_ready(300), engine.load_error
    return engine


@pytest.fixture(scope="module")
def engine(generator_model) -> Iterator[CompletionEngine]:
    instance = engine_with()
    yield instance
    instance.close()


def test_an_edited_place_is_completed_before_its_request(engine: CompletionEngine) -> None:
    engine.forget()
    line = "        chunks = self.iterencode(o, _one_shot=True)"
    request = at(ENCODER, "json/encoder.py", line, "        c")
    before = dict(engine.ahead_stats)
    assert engine.prefill(request)
    assert engine.wait_ahead(120)
    prefilled = engine.ahead_stats["prefill_tokens"] - before["prefill_tokens"]
    assert prefilled > 100
    assert engine.ahead_stats["completed_ahead"] == before["completed_ahead"] + 1
    # The generation ahead kept every prefilled token, and its result waits in the cache.
    used = engine.ahead_stats["prefill_used_tokens"] - before["prefill_used_tokens"]
    assert used == prefilled
    result = engine.complete(request)
    assert result is not None and result.cached, engine.last_reason


def test_the_prompt_evaluated_ahead_is_built_once(
    engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.forget()
    built: list[CompletionRequest] = []
    build = engine.build_prompt

    def counting(request: CompletionRequest, *args: Any, **kwargs: Any) -> BuiltPrompt:
        built.append(request)
        return build(request, *args, **kwargs)

    monkeypatch.setattr(engine, "build_prompt", counting)
    request = at(ENCODER, "json/encoder.py", "        if (_one_shot and", "        if (")
    assert engine.prefill(request)
    assert engine.wait_ahead(120)
    # Evaluated a step at a time, then answered: the same prompt, built and tokenized once.
    assert len(built) == 1


def test_a_request_for_the_same_place_waits_for_the_work_under_way(
    engine: CompletionEngine,
) -> None:
    engine.forget()
    request = at(DECODER, "json/decoder.py", "        end = _w(s, end).end()", "        e")
    before = dict(engine.ahead_stats)
    assert engine.prefill(request)
    threading.Event().wait(0.3)  # the prompt is being evaluated
    result = engine.complete(request)
    assert result is not None and result.cached, engine.last_reason
    assert engine.ahead_stats["prefill_cancelled"] == before["prefill_cancelled"]
    assert engine.ahead_stats["completed_ahead"] == before["completed_ahead"] + 1


def test_the_next_keystroke_stops_the_work_and_keeps_what_it_evaluated(
    engine: CompletionEngine,
) -> None:
    engine.forget()
    request = at(DECODER, "json/decoder.py", "        end = _w(s, end).end()", "        e")
    next_key = replace(request, prefix=request.prefix + "n")  # typed on; the suffix stays
    before = dict(engine.ahead_stats)
    assert engine.prefill(request)
    threading.Event().wait(0.3)  # the prompt is being evaluated
    result = engine.complete(next_key)
    assert result is not None and not result.cached, engine.last_reason
    assert engine.ahead_stats["prefill_cancelled"] == before["prefill_cancelled"] + 1
    done = engine.ahead_stats["prefill_tokens"] - before["prefill_tokens"]
    used = engine.ahead_stats["prefill_used_tokens"] - before["prefill_used_tokens"]
    assert 0 < done < result.prompt_tokens - 1
    assert used == done
    assert result.reused_tokens >= done


def test_the_first_line_comes_first_and_the_rest_from_the_cache(generator_model) -> None:
    request = empty_line(ENCODER, "json/encoder.py", "        if markers is not None:")
    whole = engine_with(first_line_first=False)
    try:
        block = whole.complete(request)
    finally:
        whole.close()
    assert block is not None and block.multiline
    first = engine_with()
    try:
        line = first.complete(request)
        assert line is not None, first.last_reason
        assert "\n" not in line.text.strip("\n")
        # Greedy decoding of the same prompt: the line is exactly the block's first line.
        assert line.text.strip("\n") == block.text.strip("\n").split("\n")[0]
        if "\n" not in block.text.strip("\n"):
            return  # a one-line block: nothing more to come
        assert line.stop_reason == "first line" and not line.multiline
        # Typing along the line is answered by the cache; typing something else stops the block.
        typing = replace(request, prefix=request.prefix + line.text[:2])
        other = replace(request, prefix=request.prefix + "zzz")
        assert first.ahead.continues_block(typing) == "typing"
        assert first.ahead.continues_block(other) is None
        # The user accepts the line and presses Enter at once: the request waits for the block
        # being finished in the background and answers with its rest from the cache.
        typed = line.text.strip("\n") + "\n"
        rest_of_block = block.text.strip("\n").split("\n", 1)[1]
        indent = rest_of_block[: len(rest_of_block) - len(rest_of_block.lstrip())]
        accepted = CompletionRequest(
            request.path,
            "python",
            request.prefix + typed + indent,
            request.suffix,
            (),
            "x",
        )
        rest = first.complete(accepted)
        assert first.ahead_stats["continuations"] == 1
        assert rest is not None and rest.cached, first.last_reason
        # The finished block starts with the very line the user saw; the rest is what follows.
        finished = first.cache.get(request.path, request.prefix, request.suffix)
        assert finished is not None and finished.text.startswith(typed + indent)
        assert rest.text == finished.text[len(typed + indent) :]
    finally:
        first.close()


def test_going_back_to_a_file_restores_its_kv_cache(generator_model) -> None:
    engine = engine_with(cache_size=0, prefill=False)
    try:
        in_encoder = at(ENCODER, "json/encoder.py", "        return ''.join(chunks)", "        r")
        in_decoder = at(DECODER, "json/decoder.py", "        end = _w(s, end).end()", "        e")
        assert engine.complete(in_encoder) is not None
        assert engine.complete(in_decoder) is not None
        again = engine.complete(in_encoder)
        assert again is not None, engine.last_reason
        warm = engine.status()["ahead"]["warm_files"]
        assert warm["saved"] >= 1 and warm["restored"] == 1, warm
        assert again.reused_tokens == again.prompt_tokens - 1
    finally:
        engine.close()


def test_without_warm_files_going_back_evaluates_the_prompt_again(generator_model) -> None:
    engine = engine_with(cache_size=0, prefill=False, warm_files=0)
    try:
        in_encoder = at(ENCODER, "json/encoder.py", "        return ''.join(chunks)", "        r")
        in_decoder = at(DECODER, "json/decoder.py", "        end = _w(s, end).end()", "        e")
        engine.complete(in_encoder)
        engine.complete(in_decoder)
        again = engine.complete(in_encoder)
        assert again is not None
        assert again.reused_tokens < again.prompt_tokens // 2
    finally:
        engine.close()


# --------------------------------------------------------------------------- the worker


def test_the_newest_job_wins() -> None:
    worker = AheadWorker()
    gate = threading.Event()
    ran: list[str] = []

    def job(name: str, wait: bool = False):
        def run(cancel: threading.Event) -> None:
            if wait:
                gate.wait(10)
            ran.append(name if not cancel.is_set() else f"{name} cancelled")

        return run

    try:
        assert worker.submit("prefill", job("p1", wait=True))
        threading.Event().wait(0.1)
        assert worker.busy() == "prefill"
        assert worker.submit("prefill", job("p2"))  # cancels p1 (running)
        # p1 still finishes its step; the worker is busy with p2 meanwhile (a request for p2's
        # place waits for it rather than starting over).
        assert worker.busy() == "prefill"
        assert worker.submit("block", job("p3"))  # replaces p2 (pending)
        assert worker.busy() == "block"
        gate.set()
        assert worker.wait_idle(10)
        assert ran == ["p1 cancelled", "p3"]
        assert worker.busy() is None
    finally:
        worker.close()


def test_an_offered_job_displaces_nothing() -> None:
    worker = AheadWorker()
    gate = threading.Event()
    ran: list[str] = []

    def job(
        name: str, then: Callable[[], object] | None = None
    ) -> Callable[[threading.Event], None]:
        def run(cancel: threading.Event) -> None:
            gate.wait(10)
            ran.append(name if not cancel.is_set() else f"{name} cancelled")
            if then is not None:
                then()

        return run

    try:
        # A job may offer its own follow-up; an outsider's offer waits for an idle worker.
        follow_up = job("refresh after block")
        assert worker.submit("block", job("block", lambda: worker.offer("refresh", follow_up)))
        threading.Event().wait(0.1)
        assert not worker.offer("refresh", job("refresh from outside"))
        gate.set()
        assert worker.wait_idle(10)
        assert ran == ["block", "refresh after block"]
        assert worker.offer("refresh", job("refresh when idle"))
        assert worker.wait_idle(10)
        assert ran[-1] == "refresh when idle"
    finally:
        worker.close()
