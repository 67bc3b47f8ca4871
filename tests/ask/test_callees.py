"""Questions about what code calls: which questions (pure), the calls in a definition
(tree-sitter), and the answer from a real index and from the code in view, with no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git_repo
from repotune.server.ask.callees import (
    MAX_LISTED_CALLEES,
    Callee,
    callee_question,
    callees_answer,
    callees_of,
)
from repotune.server.ask.focus import CodeInView
from repotune.server.ask.usages import IN_VIEW

CART = '''"""A shopping cart."""
from shop.money import round_price


class Cart:
    def __init__(self, lines):
        self.lines = lines

    def total(self, tax):
        """Sum of the lines with tax."""
        subtotal = sum(line.amount() for line in self.lines)
        def taxed(value):
            return apply_tax(value, tax)
        return round_price(taxed(subtotal))  # round_price(...) once

    def empty(self):
        return not self.lines
'''


def test_which_questions_ask_what_code_calls() -> None:
    assert callee_question("What does `Cart.total` call?") == "Cart.total"
    assert callee_question("Which functions does configure call?") == "configure"
    assert callee_question("What does this method call?") == IN_VIEW
    assert callee_question("callees of parse_pin") == "parse_pin"
    assert callee_question("And `Cart.total`: what does it call?") == "Cart.total"
    for other in ("What calls configure?", "What does configure do?", "What does it call?"):
        assert callee_question(other) is None, other


def test_the_calls_in_a_definition_each_once_in_order() -> None:
    found = callees_of("shop/cart.py", [(101, CART)], "Cart.total")
    assert found is not None
    definition, calls = found
    assert (definition.name, definition.start_line, definition.end_line) == ("Cart.total", 109, 114)
    assert [(c.name, c.line) for c in calls] == [
        ("sum", 111),
        ("line.amount", 111),
        ("apply_tax", 113),  # a nested function's calls are the definition's
        ("round_price", 114),
        ("taxed", 114),
    ]
    assert callees_of("shop/cart.py", [(1, CART)], "Cart.empty")[1] == []  # type: ignore[index]
    assert callees_of("shop/cart.py", [(1, CART)], "checkout") is None


def test_the_answer_says_where_each_callee_is_defined() -> None:
    calls = [Callee("round_price", 14, ("shop/money.py:3",)), Callee("sum", 11)]
    assert callees_answer("Cart.total", "shop/cart.py:9", calls) == (
        "`Cart.total` (shop/cart.py:9) calls:\n"
        "- `round_price` (line 14): defined at shop/money.py:3\n"
        "- `sum` (line 11): not defined in the indexed code (a builtin or a library)"
    )
    many = [Callee(f"f{i}", i) for i in range(MAX_LISTED_CALLEES + 2)]
    assert callees_answer("g", "a.py:1", many).endswith("- … and 2 more")
    assert callees_answer("g", "a.py:1", []) == "`g` (a.py:1) calls nothing: its code has no call."


@pytest.mark.slow
def test_answered_from_a_real_index_and_from_the_code_in_view(tmp_path: Path) -> None:
    from repotune.server.assistant import Assistant

    money = '"""Money."""\n\n\ndef round_price(value):\n    return round(value, 2)\n'
    root = git_repo(tmp_path / "shop-repo", {"shop/cart.py": CART, "shop/money.py": money})
    assistant = Assistant({"index": {"dense": False, "index_dir": str(tmp_path / "index")}})
    try:
        assistant.add_folder(root, watch=False)
        assert assistant.folders.index_for(root.resolve()).wait_lexical(60)
        answer = assistant.ask("What does `Cart.total` call?")
        assert answer.answer.splitlines()[:5] == [
            "`Cart.total` (shop/cart.py:9) calls:",
            "- `sum` (line 11): not defined in the indexed code (a builtin or a library)",
            "- `line.amount` (line 11): not defined in the indexed code (a builtin or a library)",
            "- `apply_tax` (line 13): not defined in the indexed code (a builtin or a library)",
            "- `round_price` (line 14): defined at shop/money.py:4",
        ], answer.answer
        citation = answer.citations[0]
        assert (citation.path, citation.start_line, citation.end_line) == ("shop/cart.py", 9, 14)
        money_file = root / "shop" / "money.py"
        view = CodeInView(money_file, money, 5)  # the cursor in round_price
        answer = assistant.ask("What does this function call?", view=view)
        assert answer.answer == (
            "`round_price` (shop/money.py:4) calls:\n"
            "- `round` (line 5): not defined in the indexed code (a builtin or a library)"
        ), answer.answer
    finally:
        assistant.close()


def test_the_definition_in_view_is_read_from_the_redacted_text_its_calls_are_read_from() -> None:
    """The calls were read from the redacted buffer at the byte offsets of the unredacted one:
    a secret-shaped line above the function shifted them."""
    from repotune.server.ask.from_index import index_answer

    text = (
        'API_TOKEN = "sk-live-0123456789abcdefghijklmnopqrstuvwxyz0123456789"\n'
        "configure_logging()\n\n\n"
        "def go(order):\n    return helper(order)\n"
    )
    root = Path("/work/app")
    view = CodeInView(root / "app.py", text, 6)
    answer = index_answer("What does this function call?", [], view, (root, "app.py"))
    assert answer is not None and answer.answer == (
        "`go` (app.py:5) calls:\n"
        "- `helper` (line 6): not defined in the indexed code (a builtin or a library)"
    ), answer
    assert index_answer("What does this function call?", [], view, None) is None  # not to be read
