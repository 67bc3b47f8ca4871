"""Completion quality metrics as CrossCodeEval reports them, plus latency and paired bootstrap.

- exact match: prediction and reference equal after `normalize` (outer blank lines and trailing
  spaces of each line dropped, nothing else);
- edit similarity: CrossCodeEval's `fuzz.ratio` (Indel similarity, 2·LCS / (|a| + |b|)), computed
  exactly with a bit-parallel LCS (Hyyrö 2004) so no C extension is needed;
- identifier exact match and F1: the identifiers (names, keywords removed) of both, in order for
  EM, as multisets for precision/recall;
- hit: the completion contains the answer's key identifier (`key_identifier`), the metric of the
  original RAG fine-tuning work;
- percentiles for latency, and a paired bootstrap over tasks for differences between conditions
  (every condition answers the same tasks, so resampling tasks keeps the pairing), plus McNemar's
  exact test for paired pass/fail outcomes (exact match, a test passing).
"""

from __future__ import annotations

import io
import keyword
import math
import re
import tokenize
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from repotune.server.bench.stats import percentile as percentile  # one percentile for all reports

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


_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def key_identifier(
    reference: str, prefix: str, language: str | None, api_call: bool = False
) -> str | None:
    """The answer's key identifier, for the hit metric; None when the answer names nothing.

    API-call tasks: the called function's name (the answer starts with it). Other tasks: the last
    identifier of the answer that the visible prefix does not contain (what the model had to
    know, not copy); when the prefix shows them all, the last called name, else the last name.
    """
    names = identifiers(reference, language)
    if not names:
        return None
    if api_call:
        return names[0]
    visible = set(_IDENT.findall(prefix))  # comments and strings count: they are visible too
    unseen = [name for name in names if name not in visible]
    if unseen:
        return unseen[-1]
    called = [name for name in _CALLED.findall(reference) if name in names]
    return called[-1] if called else names[-1]


def hit(prediction: str, key: str) -> bool:
    """The prediction contains `key` as a whole identifier (not inside a longer name)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])", prediction) is not None


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

    def points(self) -> list[float]:
        """[difference, low, high] in percentage points, one decimal (the results' tables)."""
        return [round(100 * value, 1) for value in (self.difference, self.low, self.high)]

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


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired binary outcomes: only discordant pairs carry information."""

    a_only: int  # tasks a gets right and b wrong
    b_only: int  # tasks b gets right and a wrong
    p_value: float  # two-sided exact (binomial, p = 1/2 over the discordant pairs)

    def to_json(self) -> dict[str, float | int]:
        return {"a_only": self.a_only, "b_only": self.b_only, "p_value": self.p_value}


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemar:
    """Two-sided exact McNemar test of paired outcomes (truthy = right) of two conditions."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} != {len(b)})")
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = a_only + b_only
    if n == 0:
        return McNemar(0, 0, 1.0)
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    # Exact in integers (a float 2**n overflows past n = 1023), one rounding at the end.
    return McNemar(a_only, b_only, float(min(Fraction(1), Fraction(2 * tail, 2**n))))
