"""`repotune bench usages` on a small real repository: the server's list against Python's ast."""

from __future__ import annotations

from pathlib import Path

from conftest import git_repo
from repotune.server.bench.usages import bench_usages, defined_names, python_uses
from repotune.server.config import Settings

SOURCE = '''"""Orders."""
from shop.money import round_price


class Order:
    def __init__(self, lines):
        self.lines = lines

    def total(self):
        return round_price(sum(line.amount for line in self.lines))


def order_total(order):
    total = 0  # a local named like the method: no use of it
    for line, amount in order.lines:
        total += amount
    return order.total()
'''


def test_the_reference_is_what_python_reads_as_the_name() -> None:
    files = {"shop/orders.py": SOURCE}
    assert python_uses(files, "total") == {("shop/orders.py", 17)}  # order.total(), not locals
    assert python_uses(files, "round_price") == {("shop/orders.py", 10)}  # not its import
    assert python_uses(files, "lines") == {("shop/orders.py", 7), ("shop/orders.py", 10),
                                           ("shop/orders.py", 15)}  # fmt: skip
    assert defined_names(files) == ["Order", "__init__", "order_total", "total"]


def test_the_listed_uses_are_held_to_the_reference(tmp_path: Path) -> None:
    money = "def round_price(value):\n    return round(value, 2)\n\n\nTOTAL = round_price(3.1)\n"
    root = git_repo(tmp_path / "shop-repo", {"shop/orders.py": SOURCE, "shop/money.py": money})
    result = bench_usages(root, Settings(), "tiny", names=10)
    assert result["names"] == 5 and result["python_files"] == 2
    # round_price twice, total once, Order and __init__ and order_total never
    assert result["uses_in_ast"] == 3
    assert (result["precision"], result["recall"], result["names_exactly_right"]) == (1.0, 1.0, 1.0)
    assert result["lookup_ms"]["n"] == 5 and result["differences"] == []
