"""The code a question is asked about when the user has it in view: a selection, or the
definition around the cursor ("What does this function do?").

Plain functions over a file's text, shared by the language server (the editor's selection) and
the CLI (`repotune ask --at FILE:LINE[-END]`). The focus goes first among the answer's snippets,
marked `in_view`, and an answer to a question that points at it ("this", "the selected code")
opens with its definition (ask/grounding.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from repotune.server.ask.definitions import Definition, definition_at, definition_in_lines
from repotune.server.completion.context import ContextSnippet
from repotune.server.index.chunking import chunk_file
from repotune.server.index.redact import redact_secrets

# The most lines of a selection the answer is shown (a whole file selected is cut to its head).
MAX_FOCUS_LINES = 120
# A comment, docstring-comment or decorator line: what may stand above a definition.
_LEAD_IN = re.compile(r"^\s*(?:$|#|//|/\*|\*|@)")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# "this function", "the selected code", "here": the question points at the code in view (not
# "that", "current" or "above" alone: "the function that parses", "the current user") ...
_POINTING = re.compile(
    r"\b(?:this|these|here|selected|selection|highlighted)\b|"
    r"\bthe current (?:function|method|class|line|lines|code|block|file|module)\b",
    re.I,
)
# ... but "this project", "this repository" is the whole codebase, not the cursor's code.
_WHOLE_CODEBASE = re.compile(
    r"\b(?:this|the current)\s+(?:project|repo|repository|codebase|code\s*base|package|library|"
    r"workspace|app|application|tool)\b",
    re.I,
)

# "this file", "the current module": the whole file the cursor is in.
_THIS_FILE = re.compile(r"\b(?:this|the current|current)\s+(?:file|module|script)\b", re.I)


def asks_about_file(question: str) -> bool:
    """Whether `question` is about the whole file in view ("What is this file for?")."""
    return bool(_THIS_FILE.search(question))


def points_at_code_in_view(question: str) -> bool:
    """Whether `question` is about the code in view: it says "this", "these", "selected", ...
    other than as "this project" (the whole codebase)."""
    return bool(_POINTING.search(_WHOLE_CODEBASE.sub(" ", question)))


def selected_focus(path: str, text: str, first_line: int, last_line: int) -> ContextSnippet:
    """The whole lines `first_line`..`last_line` (1-based, inclusive) of a file, as the
    answer's first snippet (at most MAX_FOCUS_LINES of them)."""
    lines = _lines(text)
    first = min(max(1, first_line), max(1, len(lines)))
    last = min(max(first, last_line), len(lines), first + MAX_FOCUS_LINES - 1)
    body = "\n".join(lines[first - 1 : last]) + "\n"
    return ContextSnippet(path, body, first, last, in_view=True)


def cursor_focus(path: str, text: str, line: int) -> ContextSnippet | None:
    """The code around the cursor's `line` (1-based): the innermost function, method or class
    holding it, else the innermost chunk the index makes of it; None for an empty file."""
    definition = definition_at(path, text, line)
    if definition is not None:
        first, last, symbol = definition.start_line, definition.end_line, definition.name
    else:
        holding = [c for c in chunk_file(path, text, "") if c.start_line <= line <= c.end_line]
        if not holding:
            return None
        chunk = min(holding, key=lambda c: (c.end_line - c.start_line, -c.start_line))
        first, last, symbol = chunk.start_line, chunk.end_line, chunk.symbol
    lines = _lines(text)
    while first > 1 and lines[first - 2].strip() and _LEAD_IN.match(lines[first - 2]):
        first -= 1  # the comment and decorators above it are part of what is in view
    return dataclasses.replace(selected_focus(path, text, first, last), symbol=symbol)


def _lines(text: str) -> list[str]:
    """The lines as editors count them (str.splitlines also breaks at form feeds)."""
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if len(lines) > 1 and lines[-1] == "" else lines


def only_lead_in(lines: Sequence[str]) -> bool:
    """Whether `lines` (those above a definition) are blank, comments or decorators only."""
    return all(_LEAD_IN.match(line) for line in lines)


@dataclasses.dataclass(frozen=True)
class CodeInView:
    """Where the user is when asking: a file's text (the editor's buffer) and a selection's
    whole lines, or the cursor's line (`last_line` None)."""

    path: Path
    text: str
    first_line: int  # 1-based
    last_line: int | None = None  # 1-based, inclusive; None: a cursor, nothing selected


def in_view_snippets(view: CodeInView, relative: str, question: str) -> list[ContextSnippet]:
    """The answer's first snippets for `view` (its file `relative` to its workspace folder),
    secret-shaped lines redacted: a selection always (followed by the definition it lies in,
    when it selects only part of one), the definition around a cursor only when the question
    points at it (a cursor is always somewhere; "How is X configured?" is not about the code
    under it)."""
    text = redact_secrets(view.text)
    if view.last_line is None:
        if not points_at_code_in_view(question):
            return []
        if asks_about_file(question):  # the file's head: its docstring, imports, first code
            return [selected_focus(relative, text, 1, MAX_FOCUS_LINES)]
        around = cursor_focus(relative, text, view.first_line)
        return [around] if around is not None else []
    selection = selected_focus(relative, text, view.first_line, view.last_line)
    enclosing = definition_at(relative, text, selection.start_line)
    if enclosing is None or enclosing.start_line >= selection.start_line:
        return [selection]
    inside = dataclasses.replace(selection, symbol=enclosing.name)  # named for what holds it
    whole = selected_focus(relative, text, enclosing.start_line, enclosing.end_line)
    return [inside, dataclasses.replace(whole, in_view=False)]


def selection_lines(
    start_line: int, start_character: int, end_line: int, end_character: int
) -> tuple[int, int | None]:
    """An editor's selection (0-based LSP positions) as 1-based (first, last) whole lines; last
    is None for an empty selection (a cursor). A selection that ends at the start of a line
    (whole lines selected) does not take that line."""
    if (start_line, start_character) == (end_line, end_character):
        return start_line + 1, None
    if (end_line, end_character) < (start_line, start_character):  # a backwards selection
        start_line, start_character, end_line, end_character = (
            end_line,
            end_character,
            start_line,
            start_character,
        )
    last = end_line if end_character == 0 and end_line > start_line else end_line + 1
    return start_line + 1, last


def definition_in_view(view: CodeInView, relative: str) -> tuple[Definition, str] | None:
    """The definition "this function" means (the first starting among the selected lines, else
    the innermost around the cursor), read from the text with secret-shaped lines redacted,
    and that text (the definition's bytes are in it); None outside every named definition."""
    text = redact_secrets(view.text)
    last = view.last_line if view.last_line is not None else view.first_line
    found = definition_in_lines(relative, text, view.first_line, last)
    return (found, text) if found is not None and found.name else None
