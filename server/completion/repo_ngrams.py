"""The repository's own token n-grams, mixed into greedy decoding (a cache language model).

Code is local: a name, a call's argument list or a `field(` idiom used in one file is used the
same way in its neighbours, and a small general model does not know them. Cache language models
for code (Tu et al. 2014, "On the localness of software"; Hellendoorn & Devanbu 2017) therefore
mix the model's next-token distribution with what followed the same tokens elsewhere in the
repository. Here: at each free greedy step, the longest run of the last tokens (at least
`MIN_ORDER`) that also occurs in the file around the cursor or in the repository's other indexed
files gives a distribution over what came next there; with `c` such occurrences the step takes
the argmax of `(1 - w·c/(c+1))·P_model + w·c/(c+1)·P_repository`.

Texts come from the index (already filtered and redacted, see index/files.py), so nothing enters
the table that retrieval could not show; the open file's own text comes from the request (the
editor's buffer, also redacted) and replaces its indexed copy.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Shorter matches than this say little about the next token (`self`, `.` match everywhere).
MIN_ORDER = 3
# Longer matches than this are as good as certain; looking further only costs time.
MAX_ORDER = 12
# An occurrence in the open file counts this many times one elsewhere (locality of code).
FILE_WEIGHT = 2.0
# A table holds at most this many tokens (about 24 bytes each with its index): files past it,
# in path order, are left out of a very large repository's table.
MAX_TOKENS = 4_000_000
# Tables kept at once (one per workspace folder's index).
MAX_TABLES = 8
# No separator token: ids are >= 0, so this never matches a context.
_GAP = -1
# A buffer's pieces end at a run of newlines; Gemma's tokenizer never merges across that
# boundary, so the pieces' ids joined are the whole text's (tests check it on real files).
# Another model's tokenizer may split differently there, which only loses a match.
_PIECE_END = re.compile(r"(?<=\n)(?=[^\n])")
# Buffer pieces whose ids are kept between requests (a window holds about a thousand).
MAX_PIECES = 8192

Tokenize = Callable[[str], list[int]]


class RepositoryTexts(Protocol):
    """Where the table's texts come from (the index's Store)."""

    def file_hashes(self) -> dict[str, str]:
        """Every indexed file's content hash, by workspace-relative path."""
        ...

    def file_segments(self, path: str) -> list[str]:
        """The file's indexed text, as runs of consecutive lines."""
        ...


@dataclass(frozen=True)
class _Table:
    """Token ids of many texts, with `_GAP` between them, and a sorted index of token pairs."""

    tokens: np.ndarray  # int64
    pair_keys: np.ndarray  # sorted keys of (tokens[i-2], tokens[i-1]) for every i >= 2
    pair_next: np.ndarray  # the position i each sorted key is followed at
    ranges: dict[str, tuple[int, int]]  # each file's first token and the gap after it

    @staticmethod
    def build(files: Sequence[tuple[str, np.ndarray]]) -> _Table:
        parts: list[np.ndarray] = []
        starts: list[int] = []
        size = 0
        for _, ids in files:
            starts.append(size)
            parts.append(ids)
            parts.append(np.array([_GAP], dtype=np.int64))
            size += len(ids) + 1
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        keys = _pair_keys(tokens)
        order = np.argsort(keys, kind="stable")
        return _Table(
            tokens,
            keys[order],
            order.astype(np.int64) + 2,
            {
                path: (start, start + len(ids))
                for (path, ids), start in zip(files, starts, strict=True)
            },
        )

    def following(self, context: np.ndarray, exclude: str | None) -> tuple[int, np.ndarray]:
        """The longest match of `context`'s tail (order) and the tokens that followed it."""
        if len(context) < 2 or len(self.pair_keys) == 0:
            return 0, _EMPTY
        key = int(context[-2]) * _KEY_BASE + int(context[-1])
        lo, hi = np.searchsorted(self.pair_keys, [key, key + 1])
        positions = self.pair_next[lo:hi]
        if exclude in self.ranges and len(positions):
            start, end = self.ranges[exclude]
            positions = positions[(positions < start) | (positions > end)]
        return _extend(self.tokens, positions, context, 2)


_EMPTY = np.zeros(0, dtype=np.int64)
# Pair keys: first * base + second; larger than any vocabulary, small enough for int64.
_KEY_BASE = 1 << 24


def _pair_keys(tokens: np.ndarray) -> np.ndarray:
    if len(tokens) < 3:
        return _EMPTY
    first, second = tokens[:-2], tokens[1:-1]
    keys = first * _KEY_BASE + second
    # A pair across a gap never matches a context.
    keys[(first < 0) | (second < 0)] = -1
    return keys


def _extend(
    tokens: np.ndarray, positions: np.ndarray, context: np.ndarray, order: int
) -> tuple[int, np.ndarray]:
    """Narrow `positions` (each matching `context`'s last `order` tokens) to the longest match
    followed by a token (a match at a text's end, such as the cursor's own, says nothing)."""
    positions = positions[tokens[positions] >= 0]
    if not len(positions):
        return 0, _EMPTY
    while order < min(MAX_ORDER, len(context)):
        back = positions - 1 - order
        positions_in = positions[back >= 0]
        keep = positions_in[tokens[back[back >= 0]] == context[-1 - order]]
        if not len(keep):
            break
        positions, order = keep, order + 1
    return order, tokens[positions]


def _following_in(tokens: np.ndarray, context: np.ndarray) -> tuple[int, np.ndarray]:
    """As `_Table.following`, by a scan (the open file's text: small, new each request)."""
    if len(context) < 2 or len(tokens) < 3:
        return 0, _EMPTY
    positions = np.nonzero((tokens[:-2] == context[-2]) & (tokens[1:-1] == context[-1]))[0] + 2
    return _extend(tokens, positions, context, 2)


class PieceTokens:
    """An editor buffer's token ids, kept by piece between requests: a keystroke changes one
    line, so a request tokenizes that line and not the whole window again."""

    def __init__(self, size: int = MAX_PIECES) -> None:
        self._size = size
        self._ids: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def tokenize(self, tokenize: Tokenize, text: str) -> list[int]:
        ids: list[int] = []
        with self._lock:
            for piece in _PIECE_END.split(text):
                known = self._ids.get(piece)
                if known is None:
                    known = self._ids[piece] = tokenize(piece)
                    if len(self._ids) > self._size:
                        self._ids.popitem(last=False)
                else:
                    self._ids.move_to_end(piece)
                ids.extend(known)
        return ids


class RepositoryNgrams:
    """The repository's token table for one tokenizer, kept equal to its texts by `refresh`."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, np.ndarray]] = {}  # path -> (hash, token ids)
        self._table = _Table.build([])
        self._lock = threading.Lock()  # one refresh at a time
        self._buffer = PieceTokens()  # the open files' windows (same tokenizer as the table)
        self.refreshed_at = 0.0

    @property
    def token_count(self) -> int:
        return len(self._table.tokens)

    def refresh(
        self, source: RepositoryTexts, tokenize: Tokenize, stop: threading.Event | None = None
    ) -> bool:
        """Re-tokenize the files whose hash changed and drop the removed ones; False when
        stopped early (the table then keeps its previous state)."""
        with self._lock:
            hashes = source.file_hashes()
            files: dict[str, tuple[str, np.ndarray]] = {}
            tokenized = False
            size = 0
            for path in sorted(hashes):
                if stop is not None and stop.is_set():
                    return False
                if size >= MAX_TOKENS:
                    break
                file_hash = hashes[path]
                known = self._files.get(path)
                if known is not None and known[0] == file_hash:
                    files[path] = known
                else:
                    ids: list[int] = []
                    for segment in source.file_segments(path):
                        ids.extend(tokenize(segment))
                        ids.append(_GAP)
                    files[path] = (file_hash, np.array(ids[:-1], dtype=np.int64))
                    tokenized = True
                size += len(files[path][1]) + 1
            if tokenized or files.keys() != self._files.keys():
                self._table = _Table.build([(p, ids) for p, (_, ids) in files.items()])
            self._files = files
            self.refreshed_at = time.monotonic()
            return True

    def prior(
        self, tokenize: Tokenize, prefix: str, suffix: str, path: str | None, weight: float
    ) -> NgramPrior:
        """The mixing rule for one completion: `prefix` and `suffix`, the open file's window
        around the cursor (it stands for the file's indexed copy, which is left out). `prefix`
        ends where the prompt does: the answer goes on from its last tokens, and nothing of
        the buffer follows them (else the buffer's own next tokens would match themselves)."""
        window = self._buffer
        before = window.tokenize(tokenize, prefix)
        buffer = [*before, _GAP, *window.tokenize(tokenize, suffix)]
        return NgramPrior(
            self._table,
            np.array(before[-MAX_ORDER:], dtype=np.int64),
            np.array(buffer, dtype=np.int64),
            path,
            weight,
        )


class NgramPrior:
    """Chooses each free greedy token: the model's distribution mixed with the repository's."""

    def __init__(
        self,
        table: _Table,
        before: np.ndarray,
        buffer: np.ndarray,
        path: str | None,
        weight: float,
    ) -> None:
        self._table = table
        self._before = before
        self._buffer = buffer
        self._path = path
        self._weight = weight
        self.changed = 0  # steps where the repository overruled the model

    def next_counts(self, generated: Sequence[int]) -> dict[int, float]:
        """What followed the longest match of the code so far, weighted by where it was seen."""
        context = np.concatenate([self._before, np.asarray(generated, dtype=np.int64)])
        context = context[-MAX_ORDER:]
        in_file = _following_in(self._buffer, context)
        elsewhere = self._table.following(context, self._path)
        order = max(in_file[0], elsewhere[0])
        if order < MIN_ORDER:
            return {}
        counts: dict[int, float] = {}
        for (found_order, following), weight in ((in_file, FILE_WEIGHT), (elsewhere, 1.0)):
            if found_order == order:
                tokens, seen = np.unique(following[following >= 0], return_counts=True)
                for token, times in zip(tokens.tolist(), seen.tolist(), strict=True):
                    counts[token] = counts.get(token, 0.0) + weight * times
        return counts

    def share(self, counts: Mapping[int, float]) -> float:
        """The repository's share of the mixture: it grows with the occurrences, up to the
        weight."""
        total = sum(counts.values())
        return self._weight * total / (total + 1.0)

    def choose(self, logits: np.ndarray, generated: Sequence[int]) -> int:
        """The argmax of the mixed distribution (the model's own argmax without a match);
        tokens at -inf stay ruled out."""
        best = int(logits.argmax())
        counts = self.next_counts(generated)
        if not counts:
            return best
        total = sum(counts.values())
        share = self.share(counts)
        shifted = np.exp(logits - logits[best])
        model = shifted / shifted.sum()
        mixed_best, mixed_score = best, (1 - share) * float(model[best])
        if best in counts:
            mixed_score += share * counts[best] / total
        for token, count in counts.items():
            if not np.isfinite(logits[token]):  # ruled out (token healing's spelling)
                continue
            score = (1 - share) * float(model[token]) + share * count / total
            if score > mixed_score:
                mixed_best, mixed_score = token, score
        if mixed_best != best:
            self.changed += 1
        return mixed_best


class RepositoryTables:
    """One table per source for one tokenizer (a new model starts over), refreshed on a
    background thread at most every `refresh_s` seconds; completions use whatever it holds."""

    def __init__(self, refresh_s: float = 5.0) -> None:
        self._refresh_s = refresh_s
        self._owner: object | None = None  # what the tables were tokenized for (the model)
        self._tables: dict[int, tuple[RepositoryTexts, RepositoryNgrams]] = {}
        self._running: set[int] = set()
        self._state = threading.Lock()
        self._stop = threading.Event()

    def _entry(self, source: RepositoryTexts, owner: object) -> RepositoryNgrams:
        """(holding _state) The source's table for `owner`, a new one for a new owner."""
        if owner is not self._owner:
            self._stop.set()
            self._stop = threading.Event()
            self._owner, self._tables = owner, {}
        key = id(source)
        if key not in self._tables or self._tables[key][0] is not source:
            self._tables.pop(key, None)
            while len(self._tables) >= MAX_TABLES:  # indexes replaced or folders closed
                del self._tables[next(iter(self._tables))]
            self._tables[key] = (source, RepositoryNgrams())
        return self._tables[key][1]

    def sync(self, source: RepositoryTexts, owner: object, tokenize: Tokenize) -> RepositoryNgrams:
        """The source's table, brought up to date on this thread (the evaluation, tests)."""
        with self._state:
            ngrams = self._entry(source, owner)
        ngrams.refresh(source, tokenize)
        return ngrams

    def table(self, source: RepositoryTexts, owner: object, tokenize: Tokenize) -> RepositoryNgrams:
        """The source's table for `owner`'s tokenizer; starts a refresh when it is due."""
        with self._state:
            ngrams = self._entry(source, owner)
            key = id(source)
            due = time.monotonic() - ngrams.refreshed_at >= self._refresh_s
            if due and key not in self._running:
                self._running.add(key)
                stop = self._stop
                threading.Thread(
                    target=self._refresh,
                    args=(key, ngrams, source, tokenize, stop),
                    name="repotune-ngrams",
                    daemon=True,
                ).start()
        return ngrams

    def _refresh(
        self,
        key: int,
        ngrams: RepositoryNgrams,
        source: RepositoryTexts,
        tokenize: Tokenize,
        stop: threading.Event,
    ) -> None:
        try:
            ngrams.refresh(source, tokenize, stop)
        except Exception:  # a closed index or a reloaded model: the next request tries again
            ngrams.refreshed_at = time.monotonic()
        finally:
            with self._state:
                self._running.discard(key)

    def stats(self) -> dict[str, int]:
        """How many tables, and tokens in them (the engine's status)."""
        with self._state:
            tables = [ngrams for _, ngrams in self._tables.values()]
        return {"tables": len(tables), "tokens": sum(t.token_count for t in tables)}

    def close(self) -> None:
        self._stop.set()


def texts_from(files: Mapping[str, str]) -> RepositoryTexts:
    """A fixed set of texts as a source (tests)."""
    return _FixedTexts({path: (str(hash(text)), [text]) for path, text in files.items()})


def snapshot(source: RepositoryTexts, paths: Collection[str] | None = None) -> RepositoryTexts:
    """A copy of `source`'s texts (of `paths` only, when given) that outlives it: the
    evaluation reads its index once and closes it."""
    hashes = source.file_hashes()
    wanted = hashes.keys() if paths is None else hashes.keys() & set(paths)
    return _FixedTexts({path: (hashes[path], source.file_segments(path)) for path in wanted})


class _FixedTexts:
    def __init__(self, files: dict[str, tuple[str, list[str]]]) -> None:
        self._files = files

    def file_hashes(self) -> dict[str, str]:
        return {path: file_hash for path, (file_hash, _) in self._files.items()}

    def file_segments(self, path: str) -> list[str]:
        return list(self._files[path][1])
