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
        lines = block.group(1).rstrip("\n").split("\n")
        found = _quoted_from(lines, sources)
        if found is None:
            return block.group(0)
        path, source, first = found
        wanted = sum(1 for line in lines if line.strip())
        code = "\n".join(source[first:])
        quoted = quote_code(code, path, lines=wanted)
        if _same_code(lines, quoted.split("\n")[1:-1]):
            return block.group(0)  # quoted right: left exactly as written
        return quoted or block.group(0)

    return _FENCE.sub(repaired, answer)


def _quoted_from(
    lines: Sequence[str], sources: Sequence[tuple[str, list[str]]]
) -> tuple[str, list[str], int] | None:
    """(path, lines, index of the block's first line) of the snippet the block quotes: where
    its first definition header's name is defined; else, for a block with no header, where one
    of its lines (of at least MIN_ANCHOR_CHARS) stands in exactly one place; for a header whose
    name no snippet defines, only where such a line follows a definition of a name like it (a
    misspelling: `bound_threadlocal` for `bind_threadlocal`): other code is the model's own."""
    headers = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    if headers:
        offset, name = headers[0]
        for path, source in sources:
            for index, candidate in enumerate(source):
                defined = _HEADER.match(candidate)
                if defined is not None and defined.group(1) == name:
                    return path, source, max(0, index - offset)
    anchored = _anchored(lines, sources)
    if anchored is None:
        return None
    path, source, index, offset = anchored
    if not headers:
        return path, source, max(0, index - offset)
    header_offset, name = headers[0]
    for above in range(index, -1, -1):  # the definition the anchored line is in
        defined = _HEADER.match(source[above])
        if defined is not None:
            similar = SequenceMatcher(None, defined.group(1), name).ratio() >= MIN_NAME_LIKENESS
            return (path, source, max(0, above - header_offset)) if similar else None
    return None


def _anchored(
    lines: Sequence[str], sources: Sequence[tuple[str, list[str]]]
) -> tuple[str, list[str], int, int] | None:
    """(path, lines, index there, index in the block) of the first line of the block of at
    least MIN_ANCHOR_CHARS that stands in exactly one place of the snippets."""
    for offset, line in enumerate(lines):
        text = line.strip()
        if len(text) < MIN_ANCHOR_CHARS:
            continue
        places = [
            (path, source, index)
            for path, source in sources
            for index, candidate in enumerate(source)
            if candidate.strip() == text
        ]
        if len(places) == 1:
            path, source, index = places[0]
            return path, source, index, offset
    return None


def _same_code(written: Sequence[str], quoted: Sequence[str]) -> bool:
    """Whether two blocks hold the same non-blank lines, indentation aside."""
    return [line.strip() for line in written if line.strip()] == [
        line.strip() for line in quoted if line.strip()
    ]
