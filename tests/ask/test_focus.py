"""The code in view when a question is asked: a selection, or the definition around the cursor,
and the answer's subject when the question points at it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from repotune.server.ask.answer import grounded
from repotune.server.ask.definitions import definition_at, file_summary
from repotune.server.ask.focus import (
    MAX_FOCUS_LINES,
    CodeInView,
    cursor_focus,
    in_view_snippets,
    points_at_code_in_view,
    selected_focus,
    selection_lines,
)
from repotune.server.ask.grounding import (
    ABSTAIN_TASK,
    file_opening,
    grounded_opening,
    subject_definition,
)
from repotune.server.ask.prompts import IN_VIEW_LABEL, build_ask_document
from repotune.server.ask.sources import Source, question_sources
from repotune.server.completion.context import ContextSnippet
from repotune.server.index.retrieval import RetrievedChunk

CART = '''"""A shopping cart."""

TAX_RATE = 0.2


def line_total(price: float, quantity: int) -> float:
    """Price times quantity."""
    return price * quantity


class Cart:
    def __init__(self) -> None:
        self.lines: list[tuple[float, int]] = []

    # Everything in the cart, taxed.
    @property
    def total(self) -> float:
        """The cart's total with tax."""
        subtotal = sum(line_total(p, q) for p, q in self.lines)
        return subtotal * (1 + TAX_RATE)
'''

LAUNCH_TS = """import { execFile } from "node:child_process";

/**
 * `<python> -m repotune serve`, run from the workspace root.
 * The extension and the tests both call it.
 */
export function serverLaunch(python: string, folder: string | undefined): Launch {
  return { command: python, args: ["-m", "repotune", "serve"], cwd: folder };
}
"""


@pytest.mark.parametrize(
    ("question", "points"),
    [
        ("What does this function do?", True),
        ("Explain the selected code", True),
        ("Why is this slow?", True),
        ("What do these lines return?", True),
        ("How is the cache directory configured?", False),
        ("What does this project use for logging?", False),
        ("Where in this repository are settings validated?", False),
        ("Is this codebase tested?", False),
        ("Which function is it that parses the config?", False),
        ("How is the current user stored?", False),
        ("Explain the current function", True),
    ],
)
def test_a_question_points_at_the_code_in_view(question: str, points: bool) -> None:
    assert points_at_code_in_view(question) is points


def test_an_editor_selection_becomes_whole_lines() -> None:
    assert selection_lines(4, 7, 4, 7) == (5, None)  # a cursor
    assert selection_lines(4, 2, 6, 9) == (5, 7)
    assert selection_lines(4, 0, 7, 0) == (5, 7)  # whole lines: the next line's start is not in
    assert selection_lines(6, 9, 4, 2) == (5, 7)  # selected backwards
    assert selection_lines(4, 3, 4, 9) == (5, 5)  # inside one line


def test_a_selection_is_its_lines_and_is_bounded() -> None:
    focus = selected_focus("cart.py", CART, 6, 8)
    assert focus.in_view and (focus.start_line, focus.end_line) == (6, 8)
    assert focus.text.startswith("def line_total(") and focus.text.endswith("quantity\n")
    long = "x = 1\n" * (MAX_FOCUS_LINES * 2)
    clipped = selected_focus("big.py", long, 1, MAX_FOCUS_LINES * 2)
    assert clipped.end_line == MAX_FOCUS_LINES
    assert selected_focus("cart.py", CART, 19, 400).end_line == 20  # past the end: to the end


def test_the_cursor_is_in_its_innermost_definition_with_what_stands_above_it() -> None:
    line = CART.splitlines().index("        return subtotal * (1 + TAX_RATE)") + 1
    focus = cursor_focus("cart.py", CART, line)
    assert focus is not None and focus.symbol == "Cart.total"
    assert focus.text.startswith("    # Everything in the cart, taxed.\n    @property\n")
    assert focus.end_line == line
    ts = cursor_focus("src/launch.ts", LAUNCH_TS, 8)
    assert ts is not None and ts.symbol == "serverLaunch" and ts.start_line == 3  # its JSDoc
    # outside every definition: the chunk the index makes there
    outside = cursor_focus("cart.py", CART, 3)
    assert outside is not None and "TAX_RATE = 0.2" in outside.text


def test_jsdoc_above_an_export_is_the_definitions_summary() -> None:
    definition = definition_at("src/launch.ts", LAUNCH_TS, 8)
    assert definition is not None and definition.name == "serverLaunch"
    assert definition.summary == "`<python> -m repotune serve`, run from the workspace root."


def test_a_cursor_counts_only_when_the_question_points_at_it(tmp_path: Path) -> None:
    cursor = CodeInView(tmp_path / "cart.py", CART, 8)
    assert in_view_snippets(cursor, "cart.py", "What does this function return?")
    assert in_view_snippets(cursor, "cart.py", "How is the tax rate configured?") == []
    selection = CodeInView(tmp_path / "cart.py", CART, 6, 8)
    assert in_view_snippets(selection, "cart.py", "How is the tax rate configured?")
    (whole,) = in_view_snippets(cursor, "cart.py", "What is this file for?")
    assert whole.start_line == 1 and whole.text == CART and whole.symbol is None
    assert subject_definition("What is this file for?", [whole]) is None  # the model says


def test_lines_selected_inside_a_definition_come_with_it(tmp_path: Path) -> None:
    line = CART.splitlines().index("        return subtotal * (1 + TAX_RATE)") + 1
    view = CodeInView(tmp_path / "cart.py", CART, line, line)
    selection, whole = in_view_snippets(view, "cart.py", "Why is 1 added here?")
    assert selection.in_view and selection.text.strip() == "return subtotal * (1 + TAX_RATE)"
    assert selection.symbol == "Cart.total" and not whole.in_view
    assert whole.text.startswith("    def total(self)") and whole.end_line == line
    subject = subject_definition("Why is 1 added here?", [selection, whole])
    assert subject is not None and (subject.name, subject.line) == ("Cart.total", line - 3)


def test_secret_shaped_lines_in_view_are_redacted(tmp_path: Path) -> None:
    text = 'API_KEY = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"\n\ndef f():\n    return 1\n'
    shown = in_view_snippets(CodeInView(tmp_path / "k.py", text, 1, 4), "k.py", "Explain this")
    assert shown and "4f9a8b7c6d5e" not in shown[0].text


def test_the_answer_is_about_the_definition_in_view_when_the_question_points_at_it() -> None:
    line = CART.splitlines().index("    def total(self) -> float:") + 1
    focus = cursor_focus("cart.py", CART, line)
    assert focus is not None
    other = ContextSnippet("orders.py", "def line_total(order):\n    return order.total\n", 1)
    snippets = [focus, other]
    subject = subject_definition("What does this method return?", snippets)
    assert subject is not None and (subject.name, subject.line) == ("Cart.total", line)
    opening = grounded_opening(subject, snippets)
    assert opening.startswith(f"`Cart.total` (cart.py:{line}): The cart's total with tax.")
    # a question that names other code is about that code, the view only shown first
    named = subject_definition("Where is `line_total` defined?", snippets)
    assert named is not None and named.path == "orders.py"
    # lines selected inside a body, shown without their definition: the model answers alone
    body = selected_focus("cart.py", CART, line + 2, line + 3)
    assert subject_definition("What does this do?", [body, other]) is None


def test_the_prompt_marks_the_code_in_view() -> None:
    focus = selected_focus("cart.py", CART, 6, 8)
    other = ContextSnippet("orders.py", "def f():\n    return 1\n", 1)
    prompt, _ = build_ask_document("What does this do?", [focus, other])
    assert f"### cart.py:6-8{IN_VIEW_LABEL}\n" in prompt
    assert "### orders.py:1-2\n" in prompt


def test_a_local_declaration_selected_is_about_the_function_it_is_in(tmp_path: Path) -> None:
    text = (
        "export function serverEnv(base: Env, level?: string): Env {\n"
        '  const env = { ...base, PYTHONUNBUFFERED: "1" };\n'
        "  return level ? { ...env, REPOTUNE_LOG: level } : env;\n"
        "}\n"
    )
    view = CodeInView(tmp_path / "launch.ts", text, 2, 3)
    shown = in_view_snippets(view, "launch.ts", "What does this do?")
    subject = subject_definition("What does this do?", shown)
    assert subject is not None and (subject.name, subject.line) == ("serverEnv", 1)


def test_a_question_about_the_file_in_view_opens_with_its_own_summary(tmp_path: Path) -> None:
    view = CodeInView(tmp_path / "cart.py", CART, 12)
    shown = in_view_snippets(view, "cart.py", "What is this file for?")
    assert file_opening("What is this file for?", shown) == "`cart.py`: A shopping cart."
    assert file_opening("What does this function do?", shown) == ""
    ts = in_view_snippets(CodeInView(tmp_path / "l.ts", LAUNCH_TS, 8), "l.ts", "this file?")
    assert file_opening("What is this module for?", ts) == ""  # no comment of its own: the model
    assert file_summary("t.py", "#!/usr/bin/env python\n# Tools for carts.\nimport x\n") == (
        "Tools for carts."
    )
    assert file_summary("t.py", "import x\n\n# Not the file's comment.\n") is None


def test_an_abstention_that_names_nothing_says_what_it_means() -> None:
    snippets = [ContextSnippet("cart.py", CART, 1)]
    assert grounded("What is this file for?", "The indexed code does not define.", snippets) == (
        ABSTAIN_TASK
    )
    named = "The indexed code does not define `refund`."
    assert grounded("What does refund do?", named, snippets) == named


class _Index:
    """Stands in for a workspace index: fixed chunks, and the names it was asked to look up."""

    def __init__(self, chunks: list[RetrievedChunk]) -> None:
        self.chunks = chunks
        self.names: tuple[str, ...] = ()
        self.in_view = ""

    def search_question(
        self,
        question: str,
        k: int | None = None,
        used_names: Sequence[str] = (),
        in_view: str = "",
    ) -> list[RetrievedChunk]:
        self.names, self.in_view = tuple(used_names), in_view
        return self.chunks[:k]


def _chunk(path: str, first: int, last: int, score: float) -> RetrievedChunk:
    text = "x\n" * (last - first + 1)
    return RetrievedChunk(path, first, last, text, None, "code", "python", score, ("lexical",))


def test_the_code_in_view_comes_first_and_is_not_shown_twice(tmp_path: Path) -> None:
    line = CART.splitlines().index("    def total(self) -> float:") + 1
    focus = cursor_focus("cart.py", CART, line)
    assert focus is not None
    index = _Index(
        [
            _chunk("cart.py", line - 1, line + 4, 0.9),  # the same method: not again
            _chunk("cart.py", 1, 20, 0.8),  # the whole small file: more than the method
            _chunk("orders.py", 1, 5, 0.7),
        ]
    )
    sources = question_sources(
        [(tmp_path, index, 5)], "What does this do?", 5, [Source(tmp_path, focus)]
    )
    shown = [(s.snippet.path, s.snippet.start_line) for s in sources]
    assert shown == [("cart.py", focus.start_line), ("cart.py", 1), ("orders.py", 1)]
    assert sources[0].citation.uri == (tmp_path / "cart.py").as_uri()
    assert "line_total" in index.names and "TAX_RATE" in index.names  # what the method uses
    assert index.in_view == focus.text  # code like it is searched for too
