"""Code-aware tokens for the lexical index: identifiers whole and split at snake_case and
camelCase boundaries, so a query for `parse` finds parseConfig."""

from __future__ import annotations

import re

MAX_QUERY_TERMS = 12

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def split_identifier(word: str) -> list[str]:
    """snake_case and camelCase parts of an identifier, lowercased (the word itself first)."""
    lowered = word.lower()
    parts = [lowered]
    pieces: list[str] = []
    for piece in word.split("_"):
        pieces.extend(_CAMEL.findall(piece))
    lowered_pieces = [p.lower() for p in pieces if p]
    if len(lowered_pieces) > 1 or (lowered_pieces and lowered_pieces[0] != lowered):
        parts.extend(p for p in lowered_pieces if p != lowered)
    return parts


def code_terms(text: str) -> list[str]:
    """Tokens for FTS5: each identifier whole and in its parts, so `parse` finds parseConfig."""
    terms: list[str] = []
    for word in _IDENTIFIER.findall(text):
        terms.extend(split_identifier(word))
    return terms


def query_terms(text: str) -> list[str]:
    """Distinct query terms, identifiers before their parts, at most MAX_QUERY_TERMS * 3."""
    seen: dict[str, None] = {}
    for term in code_terms(text):
        if len(term) >= 2 or term.isdigit():
            seen.setdefault(term, None)
    return list(seen)[: MAX_QUERY_TERMS * 3]
