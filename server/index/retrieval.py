"""Hybrid retrieval: dense and lexical rankings fused by reciprocal rank, de-duplicated.

Code context is found by identifiers as often as by meaning, so both rankings count; RRF needs
no score calibration between BM25 and cosine distance. The cursor's own window can be excluded so
a completion never gets its own surroundings back as "context".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from repotune.server.config import RetrievalSettings
from repotune.server.index.enclosing import DEFINITION_MODIFIERS, parallel_function
from repotune.server.index.store import Store

# Each ranking contributes this many candidates per requested result.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 20
# A chunk overlapping a better one by more than this share of its lines adds nothing new.
MAX_OVERLAP_SHARE = 0.5
# Names near the cursor looked up among the workspace's definitions, nearest first.
MAX_CURSOR_NAMES = 128
# A name defined in more places than this names nothing specific (`__init__`, `forward`, `run`).
MAX_DEFINITION_SITES = 3
# The function being written, defined again elsewhere (a sibling class's method): at most this
# many of its other definitions, this file's first; a name defined more often (`__init__`) is
# looked up in this file only.
MAX_SAME_NAME_SITES = 6
# A chunk's leading run of at least BOILERPLATE_RUN lines that also stand in candidates from at
# least BOILERPLATE_FILES files is boilerplate (a license header) and is cut off: otherwise the
# same header, retrieved from every file, crowds out the code a completion needs.
BOILERPLATE_RUN = 3
BOILERPLATE_FILES = 3
# Only a chunk's first lines can hold that run (license headers are shorter).
BOILERPLATE_SCAN_LINES = 40

_NAME = re.compile(r"[A-Za-z_$][\w$]*")
_IMPORT_LINE = re.compile(
    r"^\s*(?:from|import|use|using|require|include|#\s*include|package)\b|\brequire\s*\("
)

Region = tuple[str, int, int]  # (workspace-relative path, start_line, end_line), 1-based inclusive


@dataclass(frozen=True)
class RetrievedChunk:
    path: str  # workspace-relative POSIX path
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str
    symbol: str | None
    kind: str
    language: str
    score: float  # fused RRF score
    sources: tuple[str, ...]  # e.g. ("lexical", "dense")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "kind": self.kind,
            "language": self.language,
            "score": self.score,
            "sources": list(self.sources),
            "text": self.text,
        }


# The most characters of any one line next to the cursor that a query looks at: a query costs
# the same for a minified 20 MB line as for code (the cursor's neighbourhood is what matters).
QUERY_LINE_CHARS = 2_000


def _lines_before(prefix: str, count: int) -> list[str]:
    """The last `count` lines of `prefix`, each cut to its QUERY_LINE_CHARS nearest the end."""
    if count <= 0:
        return []
    window = prefix[-count * QUERY_LINE_CHARS :]
    return [line[-QUERY_LINE_CHARS:] for line in window.splitlines()[-count:]]


def _lines_after(suffix: str, count: int) -> list[str]:
    if count <= 0:
        return []
    window = suffix[: count * QUERY_LINE_CHARS]
    return [line[:QUERY_LINE_CHARS] for line in window.splitlines()[:count]]


def cursor_query(prefix: str, suffix: str, lines: int) -> str:
    """Query text from the cursor window: the last `lines` lines before the cursor (what is
    being written) and a few lines after it (what it must fit)."""
    before = _lines_before(prefix, lines)
    after = _lines_after(suffix, max(1, lines // 4)) if lines > 0 else []
    return "\n".join([*before, *after]).strip()


@dataclass(frozen=True)
class CursorQuery:
    """What is searched for a cursor: identifiers from a wide window for the lexical ranking, a
    short window next to the cursor for the dense one (embedding cost grows with its length)."""

    lexical: str
    dense: str
    names: tuple[str, ...] = ()
    enclosing: str | None = None  # the function or method the cursor is in


def cursor_queries(
    prefix: str,
    suffix: str,
    settings: RetrievalSettings,
    count_tokens: Callable[[str], int] | None = None,
) -> CursorQuery:
    """`count_tokens` (the embedder's) bounds the dense window to `dense_query_tokens`: whole
    lines nearest the cursor, so a query costs the same whatever the lines' lengths."""
    return CursorQuery(
        lexical=cursor_query(prefix, suffix, settings.query_lines),
        dense=dense_cursor_query(prefix, suffix, settings, count_tokens),
        names=tuple(cursor_names(prefix, suffix, settings.query_lines))
        if settings.definition_weight > 0
        else (),
        enclosing=parallel_function(prefix) if settings.same_name_weight > 0 else None,
    )


def dense_cursor_query(
    prefix: str,
    suffix: str,
    settings: RetrievalSettings,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    before = _lines_before(prefix, settings.dense_query_lines)
    after = _lines_after(suffix, 1)
    if count_tokens is None:
        return "\n".join([*before, *after]).strip()
    budget = settings.dense_query_tokens - sum(count_tokens(line) for line in after)
    kept: list[str] = []
    for line in reversed(before):
        cost = count_tokens(line)
        if kept and cost > budget:
            break
        kept.append(line)
        budget -= cost
    return "\n".join([*reversed(kept), *after]).strip()


def cursor_names(
    prefix: str, suffix: str, window_lines: int, limit: int = MAX_CURSOR_NAMES
) -> list[str]:
    """Identifiers the code at the cursor uses, nearest first: the lines before the cursor, the
    rest of its line, the file's imports, then the rest of the file above. Their definitions in
    other files are what a completion most often needs and a text search most often misses."""
    lines = prefix.split("\n")
    window = lines[-window_lines:] if window_lines > 0 else []
    earlier = lines[: len(lines) - len(window)]
    groups: list[Iterable[str]] = [
        reversed(window),
        suffix[:QUERY_LINE_CHARS].split("\n", 1)[:1],
        import_lines(earlier),
        reversed(earlier),
    ]
    names: dict[str, None] = {}
    for group in groups:
        for line in group:
            for name in reversed(_NAME.findall(line[-QUERY_LINE_CHARS:])):
                if len(name) >= 3:
                    names.setdefault(name, None)
                    if len(names) >= limit:
                        return list(names)
    return list(names)


def import_lines(lines: Sequence[str]) -> Iterator[str]:
    """The lines of import statements, continuation lines of bracketed or backslashed ones
    included (`from x import (` ... `)`, `import {` ... `} from "y"`). Lazy: cursor_names stops
    reading the file once it has its names."""
    depth = 0
    continued = False
    for line in lines:
        if depth > 0 or continued or _IMPORT_LINE.search(line):
            yield line
            depth = max(0, depth + line.count("(") + line.count("{"))
            depth = max(0, depth - line.count(")") - line.count("}"))
            continued = line.rstrip().endswith("\\")


def cursor_region(path: str, prefix: str, settings: RetrievalSettings) -> Region:
    """The cursor's own surroundings, which must not come back as context."""
    cursor_line = prefix.count("\n") + 1
    lines = settings.query_lines
    return (path, max(1, cursor_line - lines), cursor_line + lines)


def rrf_fuse(
    rankings: Mapping[str, Sequence[str]], k: int, weights: Mapping[str, float] | None = None
) -> list[tuple[str, float, tuple[str, ...]]]:
    """Reciprocal-rank fusion: score(id) = sum over rankings of weight / (k + rank), rank from 1
    (weight 1 unless given)."""
    scores: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    for source, ids in rankings.items():
        weight = (weights or {}).get(source, 1.0)
        for rank, chunk_id in enumerate(ids, 1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
            sources.setdefault(chunk_id, []).append(source)
    ordered = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [(cid, scores[cid], tuple(sources[cid])) for cid in ordered]


def overlap_lines(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)


def _in_region(row: Any, exclude: Region | None) -> bool:
    if exclude is None:
        return False
    path, start, end = exclude
    return (
        row["path"] == path
        and overlap_lines((row["start_line"], row["end_line"]), (start, end)) > 0
    )


# A quoted phrase ("..." or “...”): often a docstring sentence or an error message pasted in.
_QUOTED = re.compile(r"\"([^\"]{8,300})\"|“([^”]{8,300})”")
# A quote of fewer words is a name or a value, not a sentence to find.
MIN_QUOTED_WORDS = 3


def quoted_phrases(question: str) -> tuple[str, ...]:
    """The sentences a question quotes (three words or more), as written."""
    found = (match.group(1) or match.group(2) for match in _QUOTED.finditer(question))
    return tuple(text for text in found if len(text.split()) >= MIN_QUOTED_WORDS)


# How a question writes code: `Owner.member`, or a name with an underscore or an inner capital.
_QUESTION_DOTTED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)\b")
_QUESTION_CODE = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`|\b([A-Za-z]\w*_\w+|[a-z]+[A-Z]\w*)\b")
MAX_QUESTION_NAMES = 8
# `setup.py` in a question is a file, not Owner.member.
_FILE_SUFFIXES = frozenset(
    {"py", "ts", "tsx", "js", "jsx", "go", "rs", "java", "c", "h", "cpp", "cs", "rb", "md", "toml",
     "json", "yaml", "yml", "txt", "cfg", "ini", "env", "lock"}
)  # fmt: skip


def question_names(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The `Owner.member` symbols and the bare code names a question writes, for the definition
    ranking of an ask."""
    symbols = [
        s for s in _QUESTION_DOTTED.findall(question) if s.rsplit(".", 1)[-1] not in _FILE_SUFFIXES
    ]
    names: dict[str, None] = {}
    for symbol in symbols:
        names.setdefault(symbol.rsplit(".", 1)[-1], None)
    for match in _QUESTION_CODE.finditer(question):
        names.setdefault(match.group(1) or match.group(2), None)
    return tuple(symbols[:MAX_QUESTION_NAMES]), tuple(list(names)[:MAX_QUESTION_NAMES])


@dataclass
class SearchTimings:
    embed_ms: float = 0.0
    lexical_ms: float = 0.0
    dense_ms: float = 0.0
    definitions_ms: float = 0.0
    total_ms: float = 0.0


# The first line of a definition (or its decorator): never part of a header to cut.
_DEFINITION_START = re.compile(
    rf"(?:@|{DEFINITION_MODIFIERS}"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait|impl|module|namespace)\b)"
)


def boilerplate_lines(rows: Iterable[Any]) -> set[str]:
    """Lines (stripped) among the first BOILERPLATE_SCAN_LINES of candidates from at least
    BOILERPLATE_FILES files."""
    paths_by_line: dict[str, set[str]] = {}
    for row in rows:
        head = row["text"].split("\n", BOILERPLATE_SCAN_LINES)[:BOILERPLATE_SCAN_LINES]
        for line in {line.strip() for line in head}:
            if line:
                paths_by_line.setdefault(line, set()).add(row["path"])
    return {line for line, paths in paths_by_line.items() if len(paths) >= BOILERPLATE_FILES}


def trim_boilerplate(text: str, start_line: int, boilerplate: set[str]) -> tuple[str, int] | None:
    """The chunk without its leading boilerplate run (text, new start line); None when nothing
    but boilerplate (or one line) would be left."""
    if not boilerplate:
        return text, start_line
    lines = text.split("\n")
    run = 0
    position = 0
    while position < len(lines):
        line = lines[position].strip()
        if line and (line not in boilerplate or _DEFINITION_START.match(line)):
            break  # a definition several files share (an interface's method) is code, not a header
        run += bool(line)
        position += 1
    if run < BOILERPLATE_RUN:
        return text, start_line
    rest = lines[position:]
    if sum(bool(line.strip()) for line in rest) < 2:
        return None
    return "\n".join(rest), start_line + position


class HybridRetriever:
    """Searches one store. `embed_query` returns None when no dense vector can be had now
    (embedder loading, failed, or busy): the search then runs on the lexical ranking alone.
    Names given with a query add a third ranking: where those names are defined (other files
    than the excluded region's), nearest name first."""

    def __init__(
        self,
        store: Store,
        embed_query: Callable[[str], np.ndarray | None] | None,
        rrf_k: int = 60,
        definition_weight: float = 2.0,
        same_name_weight: float = 2.0,
    ) -> None:
        self.store = store
        self.embed_query = embed_query
        self.rrf_k = rrf_k
        # A quoted sentence found word for word is as specific as a name's definition.
        self.weights = {
            "definition": definition_weight,
            "phrase": definition_weight,
            "same name": same_name_weight,
        }
        self.last_timings = SearchTimings()

    def definition_ranking(
        self, names: Sequence[str], n: int, skip_path: str | None, symbols: Sequence[str] = ()
    ) -> list[str]:
        """Chunks defining the given `Owner.member` symbols exactly, then the given names, in
        their order; names defined in more than MAX_DEFINITION_SITES places are ambiguous and
        skipped."""
        sites = self.store.definitions.definition_sites(names, MAX_DEFINITION_SITES)
        ranking: dict[str, None] = dict.fromkeys(self.store.definitions.symbol_sites(symbols))
        for name in names:
            for chunk_id, path in sites.get(name, []):
                if path != skip_path:
                    ranking.setdefault(chunk_id, None)
            if len(ranking) >= n:
                break
        return list(ranking)[:n]

    def search(
        self,
        query: str,
        k: int,
        exclude: Region | None = None,
        dense_query: str | None = None,
        names: Sequence[str] = (),
        symbols: Sequence[str] = (),
        phrases: Sequence[str] = (),
        enclosing: str | None = None,
    ) -> list[RetrievedChunk]:
        """`dense_query` (default: `query`) is the text embedded for the dense ranking; `names`
        and `symbols` (`Owner.member`) add the ranking of where they are defined, `phrases`
        the ranking of chunks that hold one of them word for word, `enclosing` (the function
        the cursor is in) the ranking of its other definitions."""
        started = time.perf_counter()
        timings = SearchTimings()
        if k <= 0 or not query.strip():
            self.last_timings = timings
            return []
        n = max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT)
        rankings: dict[str, list[str]] = {}
        t0 = time.perf_counter()
        rankings["lexical"] = [cid for cid, _ in self.store.lexical_search(query, n)]
        timings.lexical_ms = (time.perf_counter() - t0) * 1000
        cursor_path = exclude[0] if exclude is not None else None
        if (names or symbols) and self.weights["definition"] > 0:
            t0 = time.perf_counter()
            rankings["definition"] = self.definition_ranking(names, n, cursor_path, symbols)
            timings.definitions_ms = (time.perf_counter() - t0) * 1000
        if enclosing and self.weights["same name"] > 0:
            t0 = time.perf_counter()
            rankings["same name"] = self.store.definitions.same_name_sites(
                enclosing, cursor_path, MAX_SAME_NAME_SITES
            )
            timings.definitions_ms += (time.perf_counter() - t0) * 1000
        if phrases and self.weights["phrase"] > 0:
            rankings["phrase"] = [cid for cid, _ in self.store.phrase_search(phrases, n)]
        if self.embed_query is not None and self.store.dense_enabled:
            t0 = time.perf_counter()
            vector = self.embed_query(dense_query or query)
            timings.embed_ms = (time.perf_counter() - t0) * 1000
            if vector is not None:
                t0 = time.perf_counter()
                rankings["dense"] = [cid for cid, _ in self.store.dense_query(vector, n)]
                timings.dense_ms = (time.perf_counter() - t0) * 1000
        fused = rrf_fuse(rankings, self.rrf_k, self.weights)
        rows = self.store.get_chunks([cid for cid, _, _ in fused])
        boilerplate = boilerplate_lines(rows.values())
        results: list[RetrievedChunk] = []
        kept: dict[str, list[tuple[int, int]]] = {}
        for chunk_id, score, sources in fused:
            row = rows.get(chunk_id)
            if row is None or _in_region(row, exclude):
                continue  # a stale vector, or the cursor's own window
            trimmed = trim_boilerplate(row["text"], row["start_line"], boilerplate)
            if trimmed is None:
                continue  # nothing but a header every file carries
            text, start_line = trimmed
            span = (start_line, row["end_line"])
            length = span[1] - span[0] + 1
            if any(
                overlap_lines(span, other)
                > MAX_OVERLAP_SHARE * min(length, other[1] - other[0] + 1)
                for other in kept.get(row["path"], [])
            ):
                continue
            kept.setdefault(row["path"], []).append(span)
            results.append(
                RetrievedChunk(
                    path=row["path"],
                    start_line=start_line,
                    end_line=row["end_line"],
                    text=text,
                    symbol=row["symbol"],
                    kind=row["kind"],
                    language=row["language"],
                    score=score,
                    sources=sources,
                )
            )
            if len(results) >= k:
                break
        timings.total_ms = (time.perf_counter() - started) * 1000
        self.last_timings = timings
        return results
