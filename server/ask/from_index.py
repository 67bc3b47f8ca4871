"""Answers read from the index with no model, over every workspace folder: where code is used
(ask/usages.py, ask/use_sites.py) and what it calls (ask/callees.py), cited to their lines;
Assistant.answer_from_index asks here before any model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from repotune.server.ask.callees import (
    Callee,
    callee_question,
    callees_answer,
    callees_of,
    calls_in,
    definition_places,
    with_definitions,
)
from repotune.server.ask.definitions import Definition
from repotune.server.ask.focus import CodeInView, definition_in_view
from repotune.server.ask.sources import Answer, Citation
from repotune.server.ask.usages import IN_VIEW, UsageQuestion, usage_answer, usage_question
from repotune.server.ask.use_sites import MAX_SCANNED_FILES, Site, sites_in_index

# (root, WorkspaceIndex) of each workspace folder.
Folders = Sequence[tuple[Path, Any]]
# Where the index looks for a definition of a name whose callees are asked for.
MAX_DEFINING_FILES = 8


class InView(NamedTuple):
    """The definition a question about "this function" is about, in the editor's text."""

    root: Path  # its workspace folder
    path: str  # relative to it
    definition: Definition
    text: str  # the buffer, secret-shaped lines redacted (the definition's bytes are in it)


def index_answer(
    question: str,
    folders: Folders,
    view: CodeInView | None = None,
    located: tuple[Path, str] | None = None,
) -> Answer | None:
    """The answer to a question about where code is used or what it calls, or None (any other
    question, or one these cannot answer); "this function" is the definition in `view`, whose
    file is `located` in a folder (root, relative path; None: not to be read)."""

    def in_view() -> InView | None:
        if view is None or located is None:
            return None
        found = definition_in_view(view, located[1])
        return InView(*located, *found) if found is not None else None

    usage = usage_question(question)
    if usage is not None:
        if usage.name != IN_VIEW:
            found = usage_reply(folders, usage)
        elif (seen := in_view()) is not None:  # "Is this class subclassed?"
            found = usage_reply(folders, UsageQuestion(seen.definition.name, True, usage.role))
        else:
            found = None
        if found is not None:
            return found
    name = callee_question(question)
    if name is None:
        return None
    if name != IN_VIEW:
        return callees_reply(folders, name)
    seen = in_view()
    if seen is None:
        return None
    calls = calls_in(seen.path, seen.text, seen.definition)
    return callees_in_view_reply(folders, seen.root, seen.path, seen.definition, calls)


def usage_reply(folders: Folders, usage: UsageQuestion) -> Answer | None:
    """Where `usage`'s name is used in every folder; None with nothing indexed yet (answered as
    any question is) or for a plain word that no folder defines (the model's question)."""
    started = time.perf_counter()
    if not any(index.store.chunk_count() for _, index in folders):
        return None
    if not usage.code_shaped and not any(_defines(index, usage.name) for _, index in folders):
        return None
    sites: list[tuple[Path, Site]] = []
    files = scanned = 0
    for root, index in folders:
        found, total, read = sites_in_index(
            index.store, usage.searched, MAX_SCANNED_FILES - scanned
        )
        sites += [(root, site) for site in found]
        files += total
        scanned += read
    complete = all(index.wait_lexical(0) for _, index in folders)  # first pass done
    text, cited = usage_answer(usage, [site for _, site in sites], files, scanned, complete)
    root_of = {id(site): root for root, site in sites}
    citations = [
        Citation(s.path, (root_of[id(s)] / s.path).as_uri(), s.line, s.line) for s in cited
    ]
    return Answer(text, citations, _took(started))


def _defines(index: Any, name: str) -> bool:
    return bool(index.store.definitions.count(name))


def callees_reply(folders: Folders, name: str) -> Answer | None:
    """What the first definition of `name` the folders' indexes hold calls; None when none
    defines it (the model answers, or says the code does not define it)."""
    started = time.perf_counter()
    short = name.rsplit(".", 1)[-1]
    for root, index in folders:
        sites = index.store.definitions.definition_sites([short], MAX_DEFINING_FILES)
        for path in sorted({path for _, path in sites.get(short, [])}):
            found = callees_of(path, index.store.file_runs(path), name)
            if found is not None:
                definition, calls = found
                return _callees_reply(folders, root, path, definition, calls, started)
    return None


def callees_in_view_reply(
    folders: Folders, root: Path, path: str, definition: Definition, calls: list[Callee]
) -> Answer:
    """What the definition in view (`path` in folder `root`) calls."""
    return _callees_reply(folders, root, path, definition, calls, started=time.perf_counter())


def _callees_reply(
    folders: Folders,
    root: Path,
    path: str,
    definition: Definition,
    calls: list[Callee],
    started: float,
) -> Answer:
    def places(callee: str) -> list[str]:
        return [place for _, index in folders for place in definition_places(index, callee)]

    text = callees_answer(
        definition.name, f"{path}:{definition.start_line}", with_definitions(calls, places)
    )
    citation = Citation(path, (root / path).as_uri(), definition.start_line, definition.end_line)
    return Answer(text, [citation], _took(started))


def _took(started: float) -> dict[str, float]:
    return {"retrieval": (time.perf_counter() - started) * 1000.0}
