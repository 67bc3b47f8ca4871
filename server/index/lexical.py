"""Lexical ranking: BM25 over the index's FTS5 table, with term document counts held in memory.

The store writes the FTS rows (`fts_names`, `fts_body`) in the same transaction as the chunk rows;
this module only reads them. Queries keep the rarest informative terms, so a query costs a few ms
whatever the size of the index.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from repotune.server.index.chunking import Chunk
from repotune.server.index.terms import MAX_QUERY_TERMS, code_terms, query_terms

# Terms found in more than this share of chunks say little and make FTS5 rank most of the table.
COMMON_TERM_SHARE = 0.2
# FTS5's cost grows with the postings it reads: terms are taken rarest first until their document
# counts add up to this (the rarest terms carry most of BM25's weight anyway).
QUERY_POSTINGS_BUDGET = 2000
# Document counts come from fts5vocab, which walks a term's whole posting list per query term,
# while reading the whole vocabulary once costs about as much as a few dozen queries. So all counts
# are held in memory, refreshed in the background after this many seconds or file writes.
TERM_COUNTS_TTL_S = 60.0
TERM_COUNTS_MAX_WRITES = 64
# A quoted sentence is matched on its first words: enough to be specific, and an FTS5 phrase's
# cost grows with its length.
MAX_PHRASE_TERMS = 24


@dataclass(frozen=True)
class TermCounts:
    documents: dict[str, int]  # term -> chunks containing it
    chunks: int
    loaded_at: float  # time.monotonic()


def fts_names(chunk: Chunk) -> str:
    """The FTS `names` column (weighted above the body): path parts, symbol, parent, definitions."""
    parts = [chunk.path.replace("/", " ").replace(".", " ")]
    for value in (chunk.symbol, chunk.parent, *chunk.defines):
        if value:
            parts.append(" ".join(code_terms(value)))
    return " ".join(parts)


def fts_body(chunk: Chunk) -> str:
    """The FTS `body` column: the chunk's code-aware tokens."""
    return " ".join(code_terms(chunk.text))


class LexicalIndex:
    """Ranks chunk ids for a query on the store's connection (under the store's lock)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.RLock,
        connect: Callable[[], sqlite3.Connection],
    ) -> None:
        self._db = db
        self._lock = lock
        self._connect = connect  # a reader of its own for the counts (WAL: reads while writing)
        self._counts: TermCounts | None = None
        self._counts_loading = threading.Lock()
        self._writes_since_counts = 0

    @property
    def counts(self) -> TermCounts | None:
        return self._counts

    def wrote(self) -> None:
        """One file's rows changed: counts grow stale."""
        self._writes_since_counts += 1

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """Chunk ids ranked by BM25 over code-aware tokens (names weigh more than bodies)."""
        terms = query_terms(query)
        if not terms:
            return []
        with self._lock:
            terms = self.informative_terms(terms)
            if not terms:
                return []
            match = " OR ".join(f'"{term}"' for term in terms)
            # Ranked on the FTS table alone, then ids for the top rows only: joining chunks in
            # the ranking query looked up every matching row (twice as slow, large index).
            ranked = self._db.execute(
                "SELECT rowid, bm25(chunks_fts, 4.0, 1.0) AS score FROM chunks_fts"
                " WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
                (match, n),
            ).fetchall()
            if not ranked:
                return []
            marks = ",".join("?" * len(ranked))
            ids = dict(
                self._db.execute(
                    f"SELECT rowid, id FROM chunks WHERE rowid IN ({marks})",
                    [row[0] for row in ranked],
                ).fetchall()
            )
        return [(ids[rowid], -float(score)) for rowid, score in ranked if rowid in ids]

    def phrase_search(self, phrases: Sequence[str], n: int) -> list[tuple[str, float]]:
        """Chunk ids whose code holds one of `phrases` word for word (as FTS5 phrases over the
        same code-aware tokens), best BM25 first."""
        quoted = []
        for phrase in phrases:
            terms = code_terms(phrase)[:MAX_PHRASE_TERMS]
            if terms:
                quoted.append('body : "' + " ".join(terms) + '"')
        if not quoted:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id, bm25(chunks_fts, 4.0, 1.0) AS score FROM chunks_fts"
                " JOIN chunks c ON c.rowid = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
                (" OR ".join(quoted), n),
            ).fetchall()
        return [(chunk_id, -float(score)) for chunk_id, score in rows]

    def paths_naming(self, name: str, n: int) -> tuple[list[str], int]:
        """Files holding identifier `name` as a whole token (FTS5 folds case): the first `n`
        paths in order, and the number of files."""
        if not name or not all(part.isalnum() for part in name.split("_") if part):
            return [], 0  # only identifiers are tokens ("$" splits them)
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT c.path FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ? ORDER BY c.path",
                (f'body : "{name.lower()}"',),
            ).fetchall()
        return [row[0] for row in rows[:n]], len(rows)

    def informative_terms(self, terms: list[str]) -> list[str]:
        """Drop terms absent from the index and very common ones; keep the rarest few, within
        the postings budget."""
        found, chunks = self._document_counts(terms)
        counts = {t: c for t, c in found.items() if c > 0}
        if not counts:
            return []
        limit = max(50, int(chunks * COMMON_TERM_SHARE))
        rarest = sorted((t for t in counts if counts[t] <= limit), key=lambda t: counts[t])
        if not rarest:  # only common words: use the least common of them
            return sorted(counts, key=lambda t: counts[t])[:3]
        kept: list[str] = []
        postings = 0
        for term in rarest:
            if len(kept) >= MAX_QUERY_TERMS or (
                kept and postings + counts[term] > QUERY_POSTINGS_BUDGET
            ):
                break
            kept.append(term)
            postings += counts[term]
        return kept

    def _document_counts(self, terms: list[str]) -> tuple[dict[str, int], int]:
        """Each term's document count, and the number of chunks they were counted over."""
        counts = self._counts
        if counts is None:
            counts = self.refresh_counts()
        elif (
            time.monotonic() - counts.loaded_at > TERM_COUNTS_TTL_S
            or self._writes_since_counts > TERM_COUNTS_MAX_WRITES
        ) and not self._counts_loading.locked():
            threading.Thread(
                target=self.refresh_counts, name="repotune-term-counts", daemon=True
            ).start()
        found = {t: counts.documents[t] for t in terms if t in counts.documents}
        missing = [t for t in terms if t not in found]
        if missing:  # new since the counts were read: few, and rare
            marks = ",".join("?" * len(missing))
            found.update(
                self._db.execute(
                    f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", missing
                ).fetchall()
            )
        return found, counts.chunks

    def refresh_counts(self) -> TermCounts:
        """Read every term's document count, on a connection of its own."""
        with self._counts_loading:
            writes = self._writes_since_counts
            reader = self._connect()
            try:
                documents = dict(reader.execute("SELECT term, doc FROM chunks_vocab").fetchall())
                total = int(reader.execute("SELECT count(*) FROM chunks").fetchone()[0])
            finally:
                reader.close()
            counts = TermCounts(documents, max(1, total), time.monotonic())
            self._counts = counts
            self._writes_since_counts -= writes
            return counts
