"""Preferring the names the repository knows (known_names.py): the pure re-ranking rule."""

from __future__ import annotations

import numpy as np
from repotune.server.completion.known_names import KnownNames, NamePrior, supports

FILE = "from ledger import reconcile_quarterly\n\ntotals = reconcile_quarterly(book)\n"
# Token pieces of a made-up vocabulary; a test's logits are indexed by these ids.
PIECES = [b"reconcile", b"_quarterly", b"_monthly", b"(", b" book", b" ledger", b"\n", b""]
RECONCILE, QUARTERLY, MONTHLY, PAREN, BOOK, LEDGER, NEWLINE, SPECIAL = range(len(PIECES))


def prior(line: str, penalty: float = 3.0, *, typed: int | None = None) -> NamePrior:
    return NamePrior(
        KnownNames.of([FILE], "python"),
        PIECES,
        line=line,
        typed_chars=len(line) if typed is None else typed,
        language="python",
        penalty=penalty,
        answer_start=0,
    )


def logits(**scores: float) -> np.ndarray:
    values = np.full(len(PIECES), -10.0, dtype=np.float32)
    for name, score in scores.items():
        values[globals()[name.upper()]] = score
    return values


def test_known_names_come_from_the_texts_and_the_language() -> None:
    names = KnownNames.of([FILE], "python")
    assert "reconcile_quarterly" in names and "isinstance" in names and "import" in names
    assert "reconcile_monthly" not in names
    assert names.begins("reconcile_q") and not names.begins("reconcile_m")
    assert supports("python") and supports("typescript") and not supports("go")


def test_a_near_tie_goes_to_the_name_the_repository_knows() -> None:
    choose = prior("    result = reconcile")
    # _monthly is the model's first choice by 1 logit; no known name begins reconcile_monthly.
    history: list[int] = []
    assert choose.choose(logits(monthly=2.0, quarterly=1.0), history) == QUARTERLY
    assert choose.changed == 1
    # A confident model keeps its own choice (the penalty is finite).
    assert choose.choose(logits(monthly=6.0, quarterly=1.0), history) == MONTHLY


def test_what_the_model_wrote_earlier_counts_as_the_names_start() -> None:
    choose = prior("    result = ")
    # After the answer's `reconcile_monthly`, the name is judged whole when `(` ends it.
    history = [RECONCILE, MONTHLY]
    assert not choose.writes_known("    result = reconcile_monthly", 0, PIECES[PAREN])
    assert choose.choose(logits(paren=3.0, newline=-5.0), history) == PAREN  # nothing better
    assert choose.writes_known("    result = reconcile_quarterly", 0, PIECES[PAREN])


def test_the_users_own_names_strings_comments_and_declarations_are_not_judged() -> None:
    # A name the user typed whole is theirs, even if nothing else in the file uses it.
    line = "    draft_total = compute(book"
    assert prior(line).writes_known(line, len(line), PIECES[PAREN])
    # Inside a string, a comment, or the name a def line declares, new words are normal.
    for line in ('    log("reconcile', "    # reconcile", "def reconcile"):
        assert prior(line).choose(logits(monthly=2.0, quarterly=1.0), []) == MONTHLY
    # Inside a docstring opened above the cursor, likewise.
    docstring = NamePrior(
        KnownNames.of([FILE], "python"),
        PIECES,
        line="    reconcile",
        typed_chars=13,
        language="python",
        penalty=3.0,
        answer_start=0,
        open_block=True,
    )
    assert docstring.choose(logits(monthly=2.0, quarterly=1.0), []) == MONTHLY


def test_special_tokens_and_line_ends_are_always_allowed() -> None:
    choose = prior("    totals = reconcile_quarterly(book)")
    assert choose.writes_known("    totals = reconcile_quarterly(book)", 0, PIECES[SPECIAL])
    assert choose.writes_known("    totals = reconcile_quarterly(book)", 0, PIECES[NEWLINE])
    # A line end completes the name before it: an unknown one is judged then.
    assert not choose.writes_known("    x = reconcile_monthly", 0, PIECES[NEWLINE])
