"""Code an answer quotes is the code it was given.

The 270M model quotes a definition's first line and goes on with lines of another (a docstring
from the next function, a return type it made up). A fenced block that starts like lines of a
snippet — a definition of the same name, or a line found once among the snippets — is the model
quoting, so it is replaced by the snippet's own lines from there, as many as the block had, in the
shape every answer quotes code (definitions.quote_code). A block that quotes nothing (an example
the model wrote) is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from repotune.server.ask.definitions import quote_code

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# A definition's first line: a keyword, then the name (the languages RepoTune indexes).
_HEADER = re.compile(
    r"^\s*(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait)\s+\*?([A-Za-z_$][\w$]*)"
)
# A line shorter than this ("return x", "}") says too little to be a quote of one place.
MIN_ANCHOR_CHARS = 12
# How alike a quoted definition's name must be to the snippet's to be a misspelling of it.
MIN_NAME_LIKENESS = 0.75


def faithful_quotes(answer: str, snippets: Sequence[object]) -> str:
    """`answer` with each fenced block that quotes a snippet made the snippet's own lines."""
    sources = [
        (str(getattr(s, "path", "")), str(getattr(s, "text", "")).split("\n")) for s in snippets
    ]

    def repaired(block: re.Match[str]) -> str:
        lines = _code_lines(block.group(1).split("\n"))
        if not lines or any(_holds(_code_lines(source), lines) for _, source in sources):
            return block.group(0)  # no code, or quoted right: left exactly as written
        found = _quoted_from(lines, sources)
        if found is None:
            return block.group(0)
        path, source, first = found
        return quote_code("\n".join(source[first:]), path, lines=len(lines)) or block.group(0)

    return _FENCE.sub(repaired, answer)


def _code_lines(lines: Sequence[str]) -> list[str]:
    """The non-blank lines, stripped (what a quote is compared on: quote_code skips blanks)."""
    return [line.strip() for line in lines if line.strip()]


def _holds(source: Sequence[str], lines: Sequence[str]) -> bool:
    """Whether `lines` stand in `source` one after another."""
    width = len(lines)
    return any(source[i : i + width] == lines for i in range(len(source) - width + 1))


def _quoted_from(
    lines: Sequence[str], sources: Sequence[tuple[str, list[str]]]
) -> tuple[str, list[str], int] | None:
    """(path, lines, index of the line the quote starts on) of the snippet the block's code
    lines quote: where its first definition header's name is defined; else, for a block with
    no header, where one of its lines (of at least MIN_ANCHOR_CHARS) stands in exactly one
    place; for a header whose name no snippet defines, only where such a line follows a
    definition of a name like it (a misspelling: `bound_threadlocal` for `bind_threadlocal`):
    other code is the model's own. Lines are counted without blanks on both sides."""
    headers = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    numbered = [(path, source, _numbered(source)) for path, source in sources]
    if headers:
        offset, name = headers[0]
        for path, source, code in numbered:
            for position, (_, text) in enumerate(code):
                defined = _HEADER.match(text)
                if defined is not None and defined.group(1) == name:
                    return path, source, code[max(0, position - offset)][0]
    anchored = _anchored(lines, numbered)
    if anchored is None:
        return None
    path, source, code, position, offset = anchored
    if not headers:
        return path, source, code[max(0, position - offset)][0]
    header_offset, name = headers[0]
    for above in range(position, -1, -1):  # the definition the anchored line is in
        defined = _HEADER.match(code[above][1])
        if defined is not None:
            similar = SequenceMatcher(None, defined.group(1), name).ratio() >= MIN_NAME_LIKENESS
            return (path, source, code[max(0, above - header_offset)][0]) if similar else None
    return None


def _numbered(source: Sequence[str]) -> list[tuple[int, str]]:
    """(index in `source`, stripped line) of its non-blank lines."""
    return [(index, line.strip()) for index, line in enumerate(source) if line.strip()]


def _anchored(
    lines: Sequence[str], numbered: Sequence[tuple[str, list[str], list[tuple[int, str]]]]
) -> tuple[str, list[str], list[tuple[int, str]], int, int] | None:
    """(path, lines, their code lines, position there, position in the block) of the block's
    first line of at least MIN_ANCHOR_CHARS that stands in exactly one place of the snippets."""
    for offset, text in enumerate(lines):
        if len(text) < MIN_ANCHOR_CHARS:
            continue
        places = [
            (path, source, code, position)
            for path, source, code in numbered
            for position, (_, candidate) in enumerate(code)
            if candidate == text
        ]
        if len(places) == 1:
            path, source, code, position = places[0]
            return path, source, code, position, offset
    return None
