"""Finish the cursor's line the way the repository already writes it.

Where what is typed on the cursor's line (at least `min_chars` of it, indentation aside) begins
exactly one longer line in the retrieved snippets or above the cursor in this file, the
completion starts with the rest of that line and its end of line (generation.py forces those
tokens; the model goes on after them only in a block). A small model often knows the shape of a
line but not the repository's names; this copies them from where the repository already wrote
the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.postprocess import line_suffix_of

# Shorter typed text ("return ", "self.") begins too many different lines to pick one.
MIN_TYPED_CHARS = 8


def line_rests(typed: str, texts: Iterable[str]) -> set[str]:
    """The distinct rests of the lines in `texts` that begin (indentation aside) with `typed`
    and go on after it."""
    rests: set[str] = set()
    for text in texts:
        for line in text.split("\n"):
            stripped = line.lstrip()
            if len(stripped) > len(typed) and stripped.startswith(typed):
                rest = stripped[len(typed) :].rstrip()
                if rest:
                    rests.add(rest)
    return rests


def copied_line_rest(
    prefix: str,
    suffix: str,
    snippets: Sequence[ContextSnippet],
    min_chars: int = MIN_TYPED_CHARS,
) -> str | None:
    """The rest of the cursor's line as the repository writes it, or None.

    None unless the cursor ends its line (nothing but blanks after it), the line holds at least
    `min_chars` typed characters, and all the matching lines in `snippets` and in the lines
    above the cursor agree on one rest.
    """
    if line_suffix_of(suffix).strip():
        return None
    above, _, line = prefix.rpartition("\n")
    typed = line.lstrip()
    if len(typed) < min_chars:
        return None
    rests = line_rests(typed, [*(snippet.text for snippet in snippets), above])
    if len(rests) != 1:
        return None
    return rests.pop()
