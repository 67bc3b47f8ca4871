"""Finishing the cursor's line as the repository writes it (line_copy.py): the pure rule."""

from __future__ import annotations

from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.line_copy import copied_line_rest

SETTLE = ContextSnippet(
    "ledger/settle.py",
    "def settle(ledger):\n"
    "    totals = reconcile_quarterly_ledger(ledger, strict=True)\n"
    "    return totals\n",
)
ABOVE = "def report(ledger):\n"


def test_the_rest_of_the_one_line_that_begins_with_what_is_typed() -> None:
    rest = copied_line_rest(ABOVE + "    totals = reconcile_q", "\n", [SETTLE])
    assert rest == "uarterly_ledger(ledger, strict=True)"
    # Indentation is not part of the match; blanks after the cursor are nothing typed.
    assert copied_line_rest("totals = reconcile_", "   \nnext()", [SETTLE]) == (
        "quarterly_ledger(ledger, strict=True)"
    )


def test_the_lines_above_the_cursor_count_too() -> None:
    prefix = "    parser.add_argument('--depth', type=int)\n    parser.add_argument('--de"
    assert copied_line_rest(prefix, "\n", []) == "pth', type=int)"


def test_lines_that_disagree_leave_it_to_the_model() -> None:
    other = ContextSnippet("ledger/audit.py", "    totals = reconcile_quarterly_ledger(ledger)\n")
    assert copied_line_rest("    totals = reconcile_q", "\n", [SETTLE, other]) is None
    # The same line twice (a snippet and the file above) is one rest, not two.
    same = "    totals = reconcile_quarterly_ledger(ledger, strict=True)\n    totals = reconcile_q"
    assert copied_line_rest(same, "\n", [SETTLE]) == "uarterly_ledger(ledger, strict=True)"


def test_too_little_typed_text_after_the_cursor_or_no_longer_line_copies_nothing() -> None:
    assert copied_line_rest("    totals", "\n", [SETTLE]) is None  # under 8 characters
    assert copied_line_rest("    totals = reconcile_q", "(x)\n", [SETTLE]) is None
    assert (
        copied_line_rest(
            "    totals = reconcile_quarterly_ledger(ledger, strict=True)", "\n", [SETTLE]
        )
        is None
    )
    assert copied_line_rest("    unknown_name = ", "\n", [SETTLE]) is None
