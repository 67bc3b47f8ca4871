"""Completion quality metrics as CrossCodeEval reports them, plus latency and paired bootstrap.

- exact match: prediction and reference equal after `normalize` (outer blank lines and trailing
  spaces of each line dropped, nothing else);
- edit similarity: CrossCodeEval's `fuzz.ratio` (Indel similarity, 2·LCS / (|a| + |b|)), computed
  exactly with a bit-parallel LCS (Hyyrö 2004) so no C extension is needed;
- identifier exact match and F1: the identifiers (names, keywords removed) of both, in order for
  EM, as multisets for precision/recall;
- percentiles for latency, and a paired bootstrap over tasks for differences between conditions
  (every condition answers the same tasks, so resampling tasks keeps the pairing).
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords of the C-like languages the chunker knows, for the regex fallback.
_OTHER_KEYWORDS = frozenset(
    [
        "abstract",
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "final",
        "finally",
        "fn",
        "for",
        "func",
        "function",
        "go",
        "if",
        "impl",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "loop",
        "match",
        "mod",
        "mut",
        "new",
        "nil",
        "null",
        "package",
        "private",
        "protected",
        "pub",
        "public",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "switch",
        "this",
        "throw",
        "throws",
        "true",
        "try",
        "type",
        "typeof",
        "undefined",
        "use",
        "var",
        "void",
        "where",
        "while",
        "yield",
    ]
)


def normalize(text: str) -> str:
    """Trailing spaces of each line and blank lines at both ends removed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        lines[0] = lines[0].lstrip()
    return "\n".join(lines)


def first_line(text: str) -> str:
    """The first non-blank line (line completion is scored on one line, as in CrossCodeEval)."""
    for line in text.split("\n"):
        if line.strip():
            return line
    return ""


def exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence, bit-parallel: O(|a|·|b| / word) big-int ops."""
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, char in enumerate(b):
        masks[char] = masks.get(char, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for char in a:
        u = v & masks.get(char, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def edit_similarity(prediction: str, reference: str) -> float:
    """Indel similarity in [0, 1] on normalized text (CrossCodeEval's fuzz.ratio / 100)."""
    a, b = normalize(prediction), normalize(reference)
    if not a and not b:
        return 1.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def identifiers(code: str, language: str | None = "python") -> list[str]:
    """Names in `code`, in order, keywords excluded. Python via `tokenize` (so strings and
    comments do not count), other languages (and broken Python) via a regex."""
    if language == "python":
        names: list[str] = []
        try:
            for token in tokenize.generate_tokens(io.StringIO(code).readline):
                if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
                    names.append(token.string)
            return names
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass  # a fragment: fall back to the regex
        kw = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
        return [name for name in _IDENT.findall(code) if name not in kw]
    return [name for name in _IDENT.findall(code) if name not in _OTHER_KEYWORDS]


@dataclass(frozen=True)
class IdentifierScores:
    exact_match: bool
    precision: float
    recall: float
    f1: float


def identifier_match(prediction: str, reference: str, language: str | None) -> IdentifierScores:
    """Identifier EM (same names in the same order) and multiset precision/recall/F1."""
    predicted = identifiers(prediction, language)
    wanted = identifiers(reference, language)
    if not predicted and not wanted:
        return IdentifierScores(True, 1.0, 1.0, 1.0)
    overlap = sum((Counter(predicted) & Counter(wanted)).values())
    precision = overlap / len(predicted) if predicted else 0.0
    recall = overlap / len(wanted) if wanted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return IdentifierScores(predicted == wanted, precision, recall, f1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation); None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(np.asarray(values, dtype=float))) if len(values) else None


@dataclass(frozen=True)
class Interval:
    difference: float  # mean(a) - mean(b) on the tasks as they are
    low: float  # bootstrap percentile interval
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict[str, float | int | bool]:
        return {
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "excludes_zero": self.excludes_zero,
        }


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile interval of mean(a - b) over tasks resampled with replacement (paired)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} != {len(b)})")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(diffs)
    if n == 0:
        return Interval(0.0, 0.0, 0.0, 0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    means = diffs[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(diffs.mean()), float(low), float(high), n)
