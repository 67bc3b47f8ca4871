"""Questions about what code calls ("What does `configure` call?", "Which functions does this
method call?"), answered from the code: the calls in the definition's body, read with
tree-sitter, each with where the index defines what it calls. The opposite question, what calls
X, is ask/usages.py's; like it, the model is not asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from repotune.server.ask.definitions import Definition, definitions, file_source, walk
from repotune.server.ask.usages import IN_VIEW, NOT_NAMES, SUBJECT_PATTERN, antecedent
from repotune.server.index.chunking import new_parser
from repotune.server.languages import language_for

# At most this many callees are listed (the rest are counted).
MAX_LISTED_CALLEES = 25
_CALLS = frozenset({"call", "call_expression", "new_expression", "method_invocation"})
_CALLEE_FIELDS = ("function", "constructor", "name")

_CALLEE_QUESTIONS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # "What does X call?", "Which functions does this method call?"
        rf"\b(?:what|which)\b(?:\s+[\w-]+){{0,2}}?\s+(?:does|do)\s+{SUBJECT_PATTERN}\s+(?:call|invoke)\b",
        # "callees of X", "calls made by X"
        rf"\b(?:callees\s+of|calls\s+(?:made\s+)?(?:by|in|from))\s+{SUBJECT_PATTERN}",
    )
)


@dataclass(frozen=True)
class Callee:
    name: str  # as called: "helper", "self.store.save" (at most 60 characters)
    line: int  # 1-based, in the file
    defined_at: tuple[str, ...] = ()  # "path:line" of the definitions the index has of it


def callee_question(question: str) -> str | None:
    """The name a question asks the callees of (IN_VIEW for "this function"), or None."""
    for pattern in _CALLEE_QUESTIONS:
        found = pattern.search(question)
        if found is None:
            continue
        name = found.group("name").strip("`").strip().removesuffix("()")
        if name.lower() in ("this", "these"):
            return IN_VIEW
        if name.lower() == "it" and (earlier := antecedent(question[: found.start("name")])):
            return earlier
        if name.lower() not in NOT_NAMES and re.fullmatch(r"[A-Za-z_$][\w$.]*", name):
            return name
    return None


def definition_in_runs(
    path: str, runs: Sequence[tuple[int, str]], name: str
) -> tuple[Definition, str, int] | None:
    """The definition of `name` (or of `Owner.name`) in a file's indexed runs ((first line,
    text)) with file line numbers (its bytes the run's), that run's text and first line."""
    short = name.rsplit(".", 1)[-1]
    for first_line, text in runs:
        for found in definitions(file_source(path, text), min_lines=1):
            if found.name == name or found.name.rsplit(".", 1)[-1] == short:
                offset = first_line - 1
                start, end = found.start_line + offset, found.end_line + offset
                return replace(found, start_line=start, end_line=end), text, first_line
    return None


def callees_of(
    path: str, runs: Sequence[tuple[int, str]], name: str
) -> tuple[Definition, list[Callee]] | None:
    """The definition of `name` in a file's indexed runs and the calls in it; None when no
    run defines it."""
    found = definition_in_runs(path, runs, name)
    if found is None:
        return None
    definition, text, first_line = found
    return definition, calls_in(path, text, definition, first_line)


def calls_in(path: str, text: str, definition: Definition, first_line: int = 1) -> list[Callee]:
    """The calls in `definition`'s code (its bytes in `text`, whose first line is file line
    `first_line`), in order, each callee once (a nested function's calls count as its own)."""
    data = text.encode("utf-8", "surrogatepass")
    try:
        tree = new_parser(language_for(path)).parse(data)
    except Exception:  # no grammar: nothing read
        return []
    node = tree.root_node.descendant_for_byte_range(definition.start, definition.end)
    seen: dict[str, Callee] = {}
    for call in walk(node):
        if call.type not in _CALLS:
            continue
        callee = next(
            (c for f in _CALLEE_FIELDS if (c := call.child_by_field_name(f)) is not None), None
        )
        if callee is None:
            continue
        name = _callee_name(data[callee.start_byte : callee.end_byte].decode("utf-8", "replace"))
        if name and not name.endswith(")") and name not in seen:  # f(x)(y): f is listed
            seen[name] = Callee(name, first_line + call.start_point[0])
    return list(seen.values())


def _callee_name(text: str) -> str:
    """`self.store.save` as written; `Config(x).build` as `Config(...).build`; one line."""
    text = re.sub(r"\((?:[^()]|\([^()]*\))*\)", "(...)", " ".join(text.split()))
    return text if len(text) <= 60 else ""


# A name defined in more places than this is listed as defined "in N places" without them.
MAX_DEFINITION_SITES = 3


def definition_places(index: Any, name: str) -> list[str]:
    """ "path:line" of each definition of `name` the index (a WorkspaceIndex) has, at most
    MAX_DEFINITION_SITES: the line of the definition itself inside its chunk."""
    sites = index.store.definitions.definition_sites([name], MAX_DEFINITION_SITES).get(name, [])
    chunks = index.store.get_chunks([chunk_id for chunk_id, _ in sites])
    places: list[str] = []
    for chunk_id, path in sites:
        row = chunks.get(chunk_id)
        if row is None:
            continue
        found = definition_in_runs(path, [(int(row["start_line"]), str(row["text"]))], name)
        line = found[0].start_line if found is not None else int(row["start_line"])
        places.append(f"{path}:{line}")
    return sorted(set(places))


def with_definitions(
    callees: Sequence[Callee], sites_of: Callable[[str], list[str]]
) -> list[Callee]:
    """Each callee with where the index defines its last name part (`save` for
    `self.store.save`): `sites_of(name)` gives "path:line" places."""
    return [
        Callee(c.name, c.line, tuple(sites_of(c.name.rsplit(".", 1)[-1].removesuffix("(...)"))))
        for c in callees
    ]


def callees_answer(name: str, where: str, callees: Sequence[Callee]) -> str:
    """ "`configure` (a.py:12) calls:" and one line per callee, with its definitions."""
    if not callees:
        return f"`{name}` ({where}) calls nothing: its code has no call."
    lines = [f"`{name}` ({where}) calls:"]
    for callee in callees[:MAX_LISTED_CALLEES]:
        defined = (
            f"defined at {', '.join(callee.defined_at[:3])}"
            if callee.defined_at
            else "not defined in the indexed code (a builtin or a library)"
        )
        lines.append(f"- `{callee.name}` (line {callee.line}): {defined}")
    if len(callees) > MAX_LISTED_CALLEES:
        lines.append(f"- … and {len(callees) - MAX_LISTED_CALLEES} more")
    return "\n".join(lines)
