"""Code an answer quotes is the snippets' own: the 270M model's spliced quotes (one function's
first line, another's docstring; a misspelt name) are replaced by the lines quoted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

from repotune.server.ask.answer import answer
from repotune.server.ask.grounding import NameSite, grounded_opening
from repotune.server.ask.quotes import faithful_quotes
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings

PROCESSORS = ContextSnippet(
    "structlog/processors.py",
    "def _get_callsite_process(module: str, frame: FrameType) -> Any:\n"
    "    return os.getpid()\n"
    "\n"
    "\n"
    "def _get_callsite_process_name(module: str, frame: FrameType) -> Any:\n"
    "    return get_processname()\n",
    783,
)
THREADLOCAL = ContextSnippet(
    "structlog/threadlocal.py",
    "def bind_threadlocal(**kw: Any) -> None:\n"
    '    """\n'
    "    Put keys and values into the thread-local context.\n"
    "\n"
    "    Use this instead of :func:`~structlog.BoundLogger.bind` when you want some\n"
    "    context to be global (thread-local).\n"
    '    """\n'
    "    _CONTEXT.context.update(kw)\n",
    298,
)
SNIPPETS = [PROCESSORS, THREADLOCAL]


def test_a_spliced_quote_becomes_the_lines_it_starts_from() -> None:
    """Seen on structlog: _get_callsite_process's first line, then add_log_level's docstring."""
    written = (
        "It is a processor.\n"
        "```python\n"
        "def _get_callsite_process(module: str, frame: FrameType) -> Any:\n"
        '    """\n'
        "    Add the log level to the event dict under the ``level`` key.\n"
        "```\n"
        "Then add it to `processors`."
    )
    assert faithful_quotes(written, SNIPPETS) == (
        "It is a processor.\n"
        "```python\n"
        "def _get_callsite_process(module: str, frame: FrameType) -> Any:\n"
        "    return os.getpid()\n"
        "def _get_callsite_process_name(module: str, frame: FrameType) -> Any:\n"
        "```\n"
        "Then add it to `processors`."
    )


def test_a_misspelt_name_with_the_snippet_s_lines_is_a_quote_of_them() -> None:
    """Seen on structlog: "def bound_threadlocal(**kw: Any) -> None:" above bind_threadlocal's
    docstring, with a sentence of it rewritten."""
    written = (
        "```python\n"
        "@contextlib.contextmanager\n"
        "def bound_threadlocal(**kw: Any) -> None:\n"
        '    """\n'
        "    Put keys and values into the thread-local context.\n"
        "    Use this instead of :func:`~structlog.configure` when you want some\n"
        "```"
    )
    repaired = faithful_quotes(written, SNIPPETS)
    assert repaired.splitlines()[1] == "def bind_threadlocal(**kw: Any) -> None:", repaired
    assert "structlog.BoundLogger.bind" in repaired and "structlog.configure" not in repaired
    assert repaired.count("\n") == written.count("\n")  # as many lines as the model quoted


def test_a_right_quote_and_the_model_s_own_code_are_left_as_written() -> None:
    right = '```python\ndef bind_threadlocal(**kw: Any) -> None:\n    """\n```'
    assert faithful_quotes(right, SNIPPETS) == right
    # a setting's opening runs on into the next definition, blank lines left out (seen on
    # structlog's _EVENT_WIDTH: the block was re-anchored at `def _pad` and lost its first line)
    dev = ContextSnippet(
        "structlog/dev.py",
        "_EVENT_WIDTH = 30  # pad the event name to so many characters\n\n\n"
        'def _pad(s: str, length: int) -> str:\n    """\n    Pads *s* to length *length*.\n',
        67,
    )
    setting = (
        "```python\n_EVENT_WIDTH = 30  # pad the event name to so many characters\n"
        'def _pad(s: str, length: int) -> str:\n    """\n    Pads *s* to length *length*.\n```'
    )
    assert faithful_quotes(setting, [dev]) == setting
    example = (
        "```python\n"
        "def add_request_id(logger, method_name, event_dict):\n"  # defined by no snippet
        "    return os.getpid()\n"  # short lines are no anchors
        "```"
    )
    assert faithful_quotes(example, SNIPPETS) == example
    usage = "```python\nstructlog.configure(processors=[add_request_id])\n```"
    assert faithful_quotes(usage, SNIPPETS) == usage
    # a line found in two snippets says nothing about which one is quoted
    twice = [PROCESSORS, ContextSnippet("copy.py", PROCESSORS.text, 1)]
    ambiguous = "```python\n    return get_processname()\n    return 0\n```"
    assert faithful_quotes(ambiguous, twice) == ambiguous


def test_grounded_openings_pass_unchanged() -> None:
    """The openings read from the code (and trained on) are quotes already."""
    for snippet, name, line in ((PROCESSORS, "_get_callsite_process_name", 787),
                                (THREADLOCAL, "bind_threadlocal", 298)):  # fmt: skip
        opening = grounded_opening(NameSite(name, snippet.path, line), SNIPPETS)
        assert "```python\n" in opening
        assert faithful_quotes(opening, SNIPPETS) == opening


class ScriptedModel:
    """Stands in for llama.cpp: continues the question document with a fixed text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def create_completion(self, prompt: str, **_: object) -> Iterator[dict]:
        return iter([{"choices": [{"text": self.text, "finish_reason": "stop"}]}])


def test_the_answer_path_returns_the_repaired_quote() -> None:
    spliced = (
        " Use it as a processor.\n```python\n"
        "def _get_callsite_process(module: str, frame: FrameType) -> Any:\n"
        "    return platform.node()\n```"
    )
    loaded = SimpleNamespace(
        llm=ScriptedModel(spliced), info={}, count=lambda text: len(text.split())
    )
    settings = load_settings(None, {})
    text = answer(
        loaded,  # type: ignore[arg-type]
        settings,
        "How do I add the process id to every event?",
        SNIPPETS,
        64,
        threading.Event(),
        time.monotonic() + 30,
    )
    assert "    return os.getpid()" in text and "platform.node()" not in text, text
