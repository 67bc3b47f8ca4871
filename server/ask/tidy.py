"""The last step of an answer. A small model loops and runs out of tokens mid-sentence: a
sentence it says twice is kept once, and an answer cut short ends at its last whole sentence
(or closes the code block it was quoting)."""

from __future__ import annotations

import re

FENCE = "```"
# Shorter sentences ("Yes.", "See below.") may fairly be said twice.
MIN_REPEAT_WORDS = 4
# A sentence ends at . ! or ? (closing quotes, brackets or emphasis after it) before white space;
# "e.g." and "i.e." end none.
_NOT_ABBREVIATION = r"(?<!\be\.g)(?<!\bi\.e)"
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?=\s)|(?<=[.!?][`)\"'*])(?=\s)")
_SENTENCE_END = re.compile(rf"{_NOT_ABBREVIATION}[.!?][`)\"'*]*(?=\s|$)")
_SENTENCE_AT_END = re.compile(rf"{_NOT_ABBREVIATION}[.!?][`)\"'*]*$")
CUT_MARK = "…"
# An unfinished last sentence up to this long is dropped; a longer one is kept, marked as cut.
MAX_DROPPED_WORDS = 12


def tidy_answer(text: str, *, cut_short: bool) -> str:
    """`text` without repeated sentences; when generation stopped before the model ended it
    (token cap, time cap), also without the unfinished sentence or an unclosed code block."""
    text = without_repeats(text)
    return ended(text) if cut_short else text


def without_repeats(text: str) -> str:
    """Each prose sentence of four words or more kept at its first occurrence; code untouched."""
    parts = text.split(FENCE)
    seen: set[str] = set()
    for i in range(0, len(parts), 2):  # even parts are prose, odd ones fenced code
        parts[i] = _drop_seen(parts[i], seen)
    return FENCE.join(parts).strip()


def _drop_seen(prose: str, seen: set[str]) -> str:
    kept: list[str] = []
    for line in prose.splitlines(keepends=True):
        for piece in _SENTENCE_BREAK.split(line):
            key = " ".join(piece.split()).lower()
            if len(key.split()) >= MIN_REPEAT_WORDS:
                if key in seen:
                    continue
                seen.add(key)
            if not kept or kept[-1].endswith("\n"):
                piece = piece.lstrip(" ")  # a dropped sentence leaves no gap at a line's start
            kept.append(piece)
    return "".join(kept)


def ended(text: str) -> str:
    """A cut-short answer closed where it can be: the code block it was quoting closed after
    its last whole line, a short unfinished sentence dropped, a longer one marked as cut."""
    parts = text.split(FENCE)
    if len(parts) % 2 == 0:  # inside a code block
        head, _, code = text.rpartition(FENCE)
        whole_lines = code.rpartition("\n")[0]
        if "\n" not in whole_lines:  # no whole line of code, at most the language tag
            return ended(head.rstrip()) if head.strip() else ""
        return f"{head}{FENCE}{whole_lines}\n{FENCE}"
    prose = parts[-1].rstrip()
    if not prose.strip() or _SENTENCE_AT_END.search(prose):
        return text.rstrip()
    head = FENCE.join(parts[:-1]) + (FENCE if len(parts) > 1 else "")
    ends = list(_SENTENCE_END.finditer(prose))
    start = ends[-1].end() if ends else 0
    if len(prose[start:].split()) > MAX_DROPPED_WORDS or not (ends or len(parts) > 1):
        tick = "`" if prose.count("`") % 2 else ""  # an inline code span left open is closed
        return f"{text.rstrip()}{tick}{CUT_MARK}"  # too much to drop, or nothing before: marked
    return (head + prose[:start]).rstrip()  # after the last sentence or the last code block
