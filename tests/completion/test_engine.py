"""The completion engine with the real default model (Gemma 3 270M through llama.cpp).

Kept cheap: one engine per module, small token caps and budgets.
"""

from __future__ import annotations

import json
import json.encoder as json_encoder
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SMALL_COMPLETION, spy_on_completions
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.generation import copied_tokens
from repotune.server.completion.postprocess import indent_width
from repotune.server.completion.request import CompletionRequest, CompletionResult
from repotune.server.config import load_settings, settings_with
from repotune.server.llm.decoding import lookup_draft
from repotune.server.models import ModelError

pytestmark = pytest.mark.slow

SOURCE = Path(json_encoder.__file__).read_text(encoding="utf-8")
PATH = "json/encoder.py"
SMALL = {
    "completion": {**SMALL_COMPLETION, "time_cap_ms": 20_000},
    "model": {"context_length": 1024},
}


BEFORE_RETURN = "    return '\"' + ESCAPE.sub(replace, s) + '\"'\n"


def body_request(
    context: tuple[ContextSnippet, ...] = (), before: str = BEFORE_RETURN
) -> CompletionRequest:
    """An empty line inside a function, above the line `before` (by default inside
    `py_encode_basestring`, before its `return`)."""
    cut = SOURCE.index(before)
    indent = before[: len(before) - len(before.lstrip())]
    return CompletionRequest(
        PATH, "python", SOURCE[:cut] + indent, "\n" + SOURCE[cut:], context, "cpython"
    )


def line_request() -> CompletionRequest:
    """Mid-line, arguments cut out: `return '"' + ESCAPE.sub(|) + '"'`."""
    line = "    return '\"' + ESCAPE.sub("
    cut = SOURCE.index(line) + len(line)
    rest = SOURCE[cut:].removeprefix("replace, s")
    return CompletionRequest(PATH, "python", SOURCE[:cut], rest, (), "cpython")


@pytest.fixture(scope="module")
def engine(generator_model) -> Iterator[CompletionEngine]:
    instance = CompletionEngine(load_settings(None, SMALL))
    assert instance.wait_ready(300), instance.load_error
    yield instance
    instance.close()


def fresh(engine: CompletionEngine, request: CompletionRequest) -> CompletionResult | None:
    """A request with no result cache and no sticky context from earlier tests."""
    engine.cache.clear()
    engine._sticky.clear()
    return engine.complete(request)


# --------------------------------------------------------------------------- lifecycle


def test_loading_never_blocks_the_caller(generator_model) -> None:
    engine = CompletionEngine(load_settings(None, SMALL))
    try:
        started = time.perf_counter()
        engine.start_loading()
        first = engine.complete(line_request())  # before the model is there: None, not a wait
        elapsed = time.perf_counter() - started
        assert elapsed < 0.25, elapsed
        assert first is None
        assert engine.status()["state"] in ("loading", "ready")
        assert engine.wait_ready(300), engine.load_error
        status = engine.status()
        assert status["loaded"] and status["format"] == "repotune"
        assert status["gpu_offload"] in (True, False) and status["threads"] >= 1
    finally:
        engine.close()


def test_missing_model_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    engine = CompletionEngine(load_settings(None, {"model": {"generator": str(missing)}}))
    try:
        assert engine.wait_ready(60) is False
        assert engine.load_error and "file not found" in engine.load_error
        assert engine.complete(line_request()) is None
        assert engine.status()["state"] == "error"
        with pytest.raises(ModelError, match="file not found"):
            engine.ask("what?", [])
    finally:
        engine.close()


def test_reload_applies_new_settings(generator_model) -> None:
    engine = CompletionEngine(load_settings(None, SMALL))
    try:
        assert engine.wait_ready(300)
        forced = settings_with(engine.settings, {"model": {"prompt_format": "repotune"}}, "test")
        engine.reload(forced)
        assert engine.wait_ready(300), engine.load_error
        assert engine.status()["format_forced"] is True
    finally:
        engine.close()


# --------------------------------------------------------------------------- completions


def test_block_completion_inside_a_real_function_fits_the_indentation(engine) -> None:
    # In `JSONEncoder.iterencode`; above `py_encode_basestring`'s return the model repeats the
    # nested function's `return` line, which the stop rules rightly leave out.
    request = body_request(before="        if self.check_circular:\n")
    result = fresh(engine, request)
    assert result is not None, engine.last_reason
    assert result.multiline is True
    assert result.text.strip()
    assert "<|rt_" not in result.text
    lines = result.text.split("\n")
    base = indent_width("        " + lines[0])
    assert base >= 8
    for line in lines[1:]:
        if line.strip():
            assert indent_width(line) >= base, result.text
    assert result.generated_tokens <= 32
    assert result.prompt_tokens > 100
    assert set(result.timings) >= {"tokenize", "prompt_eval", "generate", "total"}


def test_single_line_completion_mid_expression(engine) -> None:
    result = fresh(engine, line_request())
    assert result is not None, engine.last_reason
    assert result.multiline is False
    assert "\n" not in result.text and result.text.strip()
    assert result.generated_tokens <= 16


def test_an_opener_whose_block_is_written_gets_one_line(engine) -> None:
    """Editing a signature whose body is below: the line is finished, the body not written
    again (it was: the model went on into a second docstring)."""
    line = "    def iterencode("
    cut = SOURCE.index(line) + len(line)
    rest = SOURCE[cut:].removeprefix("self, o, _one_shot=False):")
    request = CompletionRequest(PATH, "python", SOURCE[:cut], rest, (), "cpython")
    result = fresh(engine, request)
    assert result is not None, engine.last_reason
    assert result.multiline is False
    assert "\n" not in result.text and result.text.strip()


def test_context_snippets_go_into_the_prompt(engine) -> None:
    snippet = ContextSnippet("json/decoder.py", "def py_scanstring(s, end):\n    pass\n", 70)
    result = fresh(engine, body_request((snippet,)))
    assert result is not None and result.prompt is not None
    assert result.prompt.snippets == (snippet,)
    assert "<|rt_file|>json/decoder.py:70-71\n" in result.prompt.text


def test_typing_on_reuses_the_kv_cache(engine) -> None:
    first = fresh(engine, line_request())
    assert first is not None
    base = line_request()
    typed = CompletionRequest(base.path, base.language, base.prefix + "r", base.suffix)
    second = fresh(engine, typed)
    assert second is not None, engine.last_reason
    # Suffix-before-prefix layout: everything up to the typed character is reused.
    assert second.reused_tokens >= second.prompt_tokens - 3, second
    assert second.prompt_tokens - second.reused_tokens < first.prompt_tokens - first.reused_tokens


def test_context_sticks_while_typing_on_one_line(engine) -> None:
    first_snippet = ContextSnippet("json/decoder.py", "class JSONDecoder:\n    pass\n", 10)
    other_snippet = ContextSnippet("json/scanner.py", "def make_scanner():\n    pass\n", 3)
    base = line_request()
    first = fresh(engine, replace(base, context=(first_snippet,)))
    assert first is not None and first.prompt is not None
    engine.cache.clear()
    assert engine.wants_context(base.path, base.prefix + "r") is False  # skip retrieval
    # retrieval moved on after a keystroke; the prompt keeps the first snippets
    second = engine.complete(replace(base, prefix=base.prefix + "r", context=(other_snippet,)))
    assert second is not None and second.prompt is not None
    assert second.prompt.snippets == (first_snippet,)
    assert second.reused_tokens >= second.prompt_tokens - 3
    # far from there (or in another file) the new snippets are used
    engine.cache.clear()
    far = "\n".join(f"# filler line {n}" for n in range(20)) + "\n"
    moved = replace(base, prefix=far + base.prefix, context=(other_snippet,))
    assert engine.wants_context(moved.path, moved.prefix) is True
    third = engine.complete(moved)
    assert third is not None and third.prompt is not None
    assert third.prompt.snippets == (other_snippet,)


def test_context_sticks_to_the_next_lines_and_their_prompt_is_mostly_reused(engine) -> None:
    """Enter at the end of a line: the next line's first request keeps the snippets (no
    retrieval) and llama.cpp re-evaluates only the tail of the prompt, not all of it."""
    snippet = ContextSnippet("json/decoder.py", "class JSONDecoder:\n    pass\n", 10)
    other = ContextSnippet("json/scanner.py", "def make_scanner():\n    pass\n", 3)
    base = line_request()
    line_end = base.prefix + "result = decode(text)"
    engine.last_stats = {}
    fresh(engine, replace(base, prefix=line_end, context=(snippet,)))
    # the model evaluated that prompt (whether anything was left to suggest or not)
    assert engine.last_stats.get("prompt_tokens"), engine.last_reason
    engine.cache.clear()
    next_line = line_end + "\n    "
    assert engine.wants_context(base.path, next_line) is False
    second = engine.complete(replace(base, prefix=next_line, context=(other,)))
    assert second is not None and second.prompt is not None, engine.last_reason
    assert second.prompt.snippets == (snippet,)
    assert second.prompt_tokens - second.reused_tokens <= 40, second
    assert second.reused_tokens >= 0.9 * second.prompt_tokens


def test_repeated_request_is_served_from_the_cache(engine) -> None:
    request = line_request()
    first = fresh(engine, request)
    assert first is not None and not first.cached
    again = engine.complete(request)
    assert again is not None and again.cached and again.text == first.text
    assert again.timings["total"] < first.timings["total"]


def test_typing_through_a_suggestion_reuses_it(engine) -> None:
    request = line_request()
    engine.cache.clear()
    suggestion = CompletionResult("replace, s", False, {}, 1, 0, 1, False, "repotune")
    engine.cache.put(request.path, request.prefix, request.suffix, suggestion)
    typed = CompletionRequest(request.path, "python", request.prefix + "repl", request.suffix)
    hit = engine.complete(typed)
    assert hit is not None and hit.cached and hit.text == "ace, s"
    # typing something else is a miss and goes to the model
    other = CompletionRequest(request.path, "python", request.prefix + "xyz", request.suffix)
    assert engine.cache.get(other.path, other.prefix, other.suffix) is None


# --------------------------------------------------------------------------- cancellation


class CancelAfter(threading.Event):
    """An event that reads as set after `checks` looks: cancellation between tokens, exactly."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > self.checks or super().is_set()


def test_cancellation_stops_between_tokens(engine) -> None:
    engine.cache.clear()
    cancel = CancelAfter(checks=3)  # one look when acquiring, then one per token
    assert engine.complete(body_request(), cancel) is None
    assert engine.last_reason == "cancelled"
    assert cancel.looks == 4  # it stopped at the first look that said "cancelled"


def test_a_newer_request_cancels_the_one_in_flight(engine) -> None:
    engine.cache.clear()
    results: dict[str, object] = {}
    older_cancel = threading.Event()
    # A cold prompt (new text at the start) keeps the older request busy for a while.
    base = body_request()
    slow = CompletionRequest(PATH, "python", "# cold\n" + base.prefix, base.suffix)

    def older() -> None:
        results["older"] = engine.complete(slow, older_cancel)

    thread = threading.Thread(target=older)
    thread.start()
    deadline = time.monotonic() + 30
    while not engine._lock.locked() and time.monotonic() < deadline:
        time.sleep(0.005)
    newer = engine.complete(line_request())
    thread.join(120)
    assert older_cancel.is_set()  # the newer request said so
    assert results["older"] is None
    assert newer is not None


def test_a_pre_cancelled_request_does_nothing(engine) -> None:
    cancel = threading.Event()
    cancel.set()
    engine.cache.clear()
    assert engine.complete(line_request(), cancel) is None


# --------------------------------------------------------------------------- questions


def test_ask_without_a_chat_template_continues_a_qa_document(
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default Gemma GGUF has no chat template: the question goes out as a Q&A document
    (the chat-template path is tested with a model that has one, ask/test_chat_template.py)."""
    from llama_cpp import Llama
    from repotune.server.ask.prompts import build_ask_document

    sent = spy_on_completions(monkeypatch, Llama)
    snippet = ContextSnippet(PATH, "def py_encode_basestring(s):\n    return '\"' + s + '\"'\n", 37)
    vague = "What does this file do?"  # names nothing the snippet defines
    answer = engine.ask(vague, [snippet], max_tokens=24)
    assert isinstance(answer, str) and answer.strip()
    assert [call["prompt"] for call in sent] == [build_ask_document(vague, [snippet])[0]]
    # A question about a definition the snippet holds: the document's answer opens with it,
    # cited, with what its signature says and its first lines; the model continues from there.
    question = "What does py_encode_basestring return?"
    opening = (
        "`py_encode_basestring` (json/encoder.py:37) is a function taking `s`.\n"
        "```python\ndef py_encode_basestring(s):\n    return '\"' + s + '\"'\n```"
    )
    answer = engine.ask(question, [snippet], max_tokens=24)
    assert answer.startswith(opening), answer
    assert sent[-1]["prompt"] == f"{build_ask_document(question, [snippet])[0]} {opening}"


# --------------------------------------------------------------------------- prompt lookup


def test_lookup_draft_proposes_what_followed_the_last_ngram() -> None:
    history = [5, 1, 2, 3, 4, 9, 9, 1, 2]
    assert lookup_draft(history, max_ngram=3, min_ngram=2, size=3) == [3, 4, 9]
    assert lookup_draft([1, 2, 3, 4], max_ngram=3, min_ngram=2) == []
    # the latest occurrence wins
    assert lookup_draft([1, 2, 7, 1, 2, 8, 1, 2], min_ngram=2, size=1) == [8]


def test_prompt_lookup_accepts_only_what_greedy_decoding_gives(engine) -> None:
    """Lookup on or off, the output is the same tokens: a draft token is kept only where the
    model's own argmax agrees. A repetitive block (registrations in a pattern) gets drafts
    accepted. Each run starts from an empty KV cache, so both evaluate the prompt alike."""
    rows = "".join(
        f'    registry.add("handler_{i}", Handler{i}, priority={i})\n' for i in range(12)
    )
    request = CompletionRequest(
        "reg.py",
        "python",
        "def register_all(registry):\n" + rows + "    ",
        "\n    return registry\n",
        (),
        "demo",
    )
    results = {}
    try:
        for lookup in (False, True):
            settings = settings_with(
                engine.settings, {"completion": {"prompt_lookup": lookup}}, "t"
            )
            engine.reload(settings)  # completion settings only: applied at once, no model reload
            engine._loaded.llm.reset()  # no KV reuse from an earlier request
            results[lookup] = fresh(engine, request)
    finally:
        engine.reload(settings_with(engine.settings, {"completion": {"prompt_lookup": False}}, "t"))
    plain, drafted = results[False], results[True]
    assert plain is not None and drafted is not None
    assert plain.drafted_tokens == 0
    assert drafted.drafted_tokens > 0
    assert 0 < drafted.accepted_tokens <= drafted.drafted_tokens
    assert drafted.text == plain.text
    assert drafted.generated_tokens == plain.generated_tokens
    assert drafted.stop_reason == plain.stop_reason


def test_generation_stops_at_the_time_cap(engine) -> None:
    """A cap of 0 ms (below what the settings accept; set here to make the stop certain on any
    machine) is already reached when the first token arrives: decoding stops after it, on the
    time cap, where the block would otherwise run to its 32-token cap."""
    capped = engine.settings.completion.model_copy(update={"time_cap_ms": 0})
    settings = engine.settings.model_copy(update={"completion": capped})
    engine.reload(settings)
    try:
        fresh(engine, body_request())
        reason, stats = engine.last_reason, dict(engine.last_stats)
    finally:
        engine.reload(load_settings(None, SMALL))
    assert "time cap" in reason, reason
    assert stats["generated_tokens"] == 1


def test_bad_adapter_is_a_clear_load_error(generator_model, tmp_path: Path) -> None:
    settings = load_settings(None, {"model": {"adapter": str(tmp_path / "missing-lora.gguf")}})
    engine = CompletionEngine(settings)
    try:
        assert engine.wait_ready(120) is False
        assert engine.load_error and "missing-lora.gguf" in engine.load_error
        assert engine.complete(line_request()) is None
    finally:
        engine.close()


# --------------------------------------------------------------------------- CLI


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repotune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / ".git").mkdir()
    (root / "geometry.py").write_text(
        "import math\n\n\n"
        "def circle_area(radius: float) -> float:\n"
        "    return math.pi * radius * radius\n\n\n"
        "def ring_area(outer: float, inner: float) -> float:\n"
        "    big = circle_area(outer)\n"
        "    small = \n"
        "    return big - small\n",
        encoding="utf-8",
    )
    (root / "shapes.py").write_text(
        "from geometry import circle_area\n\n\n"
        "class Circle:\n"
        "    def __init__(self, radius: float) -> None:\n"
        "        self.radius = radius\n\n"
        "    def area(self) -> float:\n"
        "        return circle_area(self.radius)\n",
        encoding="utf-8",
    )
    return root


def test_cli_complete_with_context_reports_what_it_used(tiny_repo: Path) -> None:
    result = run_cli("complete", "geometry.py:10:13", "--json", cwd=tiny_repo)
    assert result.returncode in (0, 3), result.stderr  # 3: the model had nothing to add
    report = json.loads(result.stdout)
    assert report["file"] == "geometry.py" and report["format"] == "repotune"
    assert report["workspace"] == str(tiny_repo.resolve())
    assert report["context"]["retrieved"], report["context"]  # shapes.py mentions circle_area
    if result.returncode == 0:
        assert report["completion"].strip() and "\n" not in report["completion"]
        assert report["prompt_tokens"] > 0 and report["timings_ms"]["total"] > 0


def test_cli_complete_without_context_is_honest(tiny_repo: Path) -> None:
    result = run_cli("complete", "geometry.py:10:13", "--no-context", cwd=tiny_repo)
    assert result.returncode in (0, 3), result.stderr
    assert "context    none (--no-context)" in result.stdout
    assert "prompt" in result.stdout or "completion (none" in result.stdout


def test_cli_complete_says_what_the_model_did_when_nothing_is_kept(tmp_path: Path) -> None:
    """A one-token cap leaves a line unfinished, which is never suggested: the report still
    gives the prompt, the tokens and the timings (it gave only the reason)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "app.py").write_text("def total(values):\n    result = 0\n    return result\n")
    (tmp_path / "repotune.toml").write_text("[completion]\nmax_tokens_line = 1\n")
    result = run_cli("complete", "app.py:3:5", "--no-context", "--json", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["completion"] is None and "token cap" in report["reason"]
    assert report["generated_tokens"] == 1 and report["prompt_tokens"] > 0
    assert report["timings_ms"]["total"] >= report["timings_ms"]["prompt_eval"] > 0
    human = run_cli("complete", "app.py:3:5", "--no-context", cwd=tmp_path)
    assert "generated  1 tokens from a " in human.stdout and "timings    " in human.stdout


def test_hide_rest_of_line_cuts_only_the_cursors_line() -> None:
    from repotune.server.cli.complete import hide_rest_of_line

    text = "a = 1\nb = compute(x)\r\nc = 3\n"
    offset = text.index("compute")
    assert hide_rest_of_line(text, offset) == ("\r\nc = 3\n", "compute(x)")
    assert hide_rest_of_line("x = last", 4) == ("", "last")  # no line break after the cursor


def test_cli_complete_can_hide_the_rest_of_the_line(tiny_repo: Path) -> None:
    # What `make demo` runs: a cursor inside finished code, the line's end held back as expected.
    result = run_cli(
        "complete", "geometry.py:11:12", "--hide-rest-of-line", "--json", cwd=tiny_repo
    )
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    assert report["hidden"]["text"] == "big - small"
    first_line = (report["completion"] or "").split("\n", 1)[0]
    assert report["hidden"]["first_line_matches"] == (first_line.strip() == "big - small")
    human = run_cli("complete", "geometry.py:11:12", "--hide-rest-of-line", cwd=tiny_repo)
    assert "hidden     'big - small'" in human.stdout


def test_cli_complete_rejects_bad_positions(tiny_repo: Path) -> None:
    for position, message in (
        ("geometry.py:10", "expected FILE:LINE:COL"),
        ("geometry.py:99:1", "past the end of the file"),
        ("geometry.py:10:80", "past the end of line 10"),
        ("nope.py:1:1", "is not a file"),
    ):
        result = run_cli("complete", position, cwd=tiny_repo)
        assert result.returncode != 0
        assert message in result.stderr + result.stdout, (position, result.stderr)


# --------------------------------------------------------------------------- benchmark sampling


def test_bench_sessions_are_seeded_and_cut_real_lines(tiny_repo: Path) -> None:
    from repotune.server.bench.sessions import sample_sessions

    sessions = sample_sessions(tiny_repo, samples=6)
    assert sessions == sample_sessions(tiny_repo, samples=6)  # reproducible
    assert sum(len(s) for s in sessions) >= 6
    for cursors in sessions:
        assert cursors[0].kind == "cold" and all(c.kind == "warm" for c in cursors[1:-1])
        assert cursors[-1].kind == "next_line"
        source = (tiny_repo / cursors[0].path).read_text(encoding="utf-8")
        enter = cursors[-1]  # the real line finished, then Enter: a new, indented empty line
        head, _, indent = enter.prefix.rpartition("\n")
        assert not indent.strip() and source.startswith(head) and source.endswith(enter.suffix)
        assert head.rsplit("\n", 1)[-1].strip()
        for cursor in cursors[:-1]:
            # the cursor's line is cut after the cursor; everything else is the real file
            assert source.startswith(cursor.prefix.rsplit("\n", 1)[0])
            assert source.endswith(cursor.suffix.split("\n", 1)[1])
        assert len({c.suffix for c in cursors}) == 1  # typing inserts: what follows stays
        typed = [len(c.prefix) for c in cursors]
        assert typed == sorted(typed)  # typing on, then the next line


def test_token_healing_finishes_a_half_typed_name(engine) -> None:
    """With healing the answer continues the name the user is typing (`collections.Coun` ->
    `ter...`, `self.na` -> `me`), the healed text itself is not repeated, and with healing
    off the same prompts end on a token the model reads as a finished name."""
    cases = [
        ("import collections\n\ncounts = collections.Coun", "\n", "ter"),
        (
            "class Greeter:\n    def __init__(self, name):\n        self.name = name\n\n"
            "    def greet(self):\n        return 'hi ' + self.na",
            "\n",
            "me",
        ),
    ]
    answers: dict[bool, list[str]] = {}
    original = engine.settings
    try:
        for healing in (False, True):
            settings = settings_with(
                engine.settings, {"completion": {"token_healing": healing}}, "t"
            )
            engine.reload(settings)  # completion settings only: applied at once
            answers[healing] = []
            for prefix, suffix, _ in cases:
                result = fresh(engine, CompletionRequest("greet.py", "python", prefix, suffix))
                answers[healing].append(result.text if result else "")
            assert engine.status()["token_healing"] is healing
    finally:
        engine.reload(original)
    for answer, (prefix, _, rest) in zip(answers[True], cases, strict=True):
        assert answer.startswith(rest), (prefix[-20:], answer)
    assert answers[False] != answers[True]


def test_a_line_opened_above_code_is_inserted_with_its_line_break(engine) -> None:
    """At a line's start before `        counts[word] = ...` the model writes the loop that
    line needs and ends it: the suggestion carries that line break, so accepting it leaves the
    code right of the cursor on a line of its own (before, the two ran together)."""
    prefix = "def count_words(text):\n    counts = {}\n"
    suffix = "        counts[word] = counts.get(word, 0) + 1\n    return counts\n"
    result = fresh(engine, CompletionRequest("words.py", "python", prefix, suffix))
    assert result is not None, engine.last_reason
    assert result.stop_reason == "end of line"
    assert result.text.endswith("\n") and result.text.count("\n") == 1
    assert result.text.strip() and "counts[word]" not in result.text


def test_a_line_is_finished_as_the_repository_writes_it(engine) -> None:
    """What is typed begins one line of a retrieved snippet: the answer is that line's rest, a
    name the model could not guess, its healed token spelled once; snippets that disagree, or
    `copy_lines` off, leave the line to the model."""
    settle = ContextSnippet(
        "ledger/settle.py",
        "def settle(ledger):\n"
        "    totals = reconcile_quarterly_ledger(ledger, strict=True, currency='NOK')\n"
        "    return totals\n",
    )
    prefix = "def report(ledger):\n    totals = reconcile_q"
    request = CompletionRequest("ledger/report.py", "python", prefix, "\n", (settle,))
    result = fresh(engine, request)
    assert result is not None
    assert result.text == "uarterly_ledger(ledger, strict=True, currency='NOK')"
    assert engine.last_stats["copied_tokens"] > 0
    # What is forced: the healed text, the rest, and the end of the line (nothing more on it).
    loaded = engine._loaded
    assert loaded is not None
    with engine._lock:
        prepared = engine.prepare_prompt(loaded, request, False, threading.Event())
    assert prepared is not None
    forced = copied_tokens(loaded, request, prepared, request.prefix, request.suffix)
    assert loaded.llm.detokenize(forced) == (
        prepared.healing.text + b"uarterly_ledger(ledger, strict=True, currency='NOK')\n"
    )
    other = ContextSnippet(
        "ledger/audit.py", "    totals = reconcile_quarterly_ledger(ledger, strict=False)\n"
    )
    fresh(engine, replace(request, context=(settle, other)))
    assert engine.last_stats["copied_tokens"] == 0
    original = engine.settings
    try:
        engine.reload(settings_with(original, {"completion": {"copy_lines": False}}, "t"))
        assert engine.status()["copy_lines"] is False
        fresh(engine, request)
        assert engine.last_stats["copied_tokens"] == 0
    finally:
        engine.reload(original)


def test_token_healing_constrains_sampling_too(engine) -> None:
    """With a temperature, the dropped text is still spelled first (the constraint runs as a
    llama.cpp logits processor), and the answer is what follows it; a token cap ends a
    constraint that is never met."""
    from repotune.server.completion.decode import decode

    settings = settings_with(
        engine.settings, {"completion": {"token_healing": True, "temperature": 1.5}}, "t"
    )
    request = CompletionRequest(
        "c.py", "python", "import collections\n\nc = collections.Coun", "\n"
    )
    loaded = engine._loaded
    assert loaded is not None
    original = engine.settings
    engine.reload(settings)
    try:
        with engine._lock:
            prepared = engine.prepare_prompt(loaded, request, False, threading.Event())
            assert prepared is not None and prepared.healing.text.endswith(b"Coun")
            for _ in range(3):
                decoded = decode(
                    loaded.llm,
                    prepared.tokens,
                    settings.completion,
                    stop=prepared.prompt.stop,
                    near_prefix=request.prefix,
                    near_suffix=request.suffix,
                    multiline=False,
                    cancel=threading.Event(),
                    healing=prepared.healing,
                    vocabulary=loaded.vocabulary,
                )
                assert decoded is not None
                raw = loaded.llm.detokenize(decoded.tokens)
                assert raw.startswith(prepared.healing.text)
                spelled = raw[len(prepared.healing.text) :].decode("utf-8", "ignore")
                assert spelled.startswith(decoded.text)
    finally:
        engine.reload(original)
