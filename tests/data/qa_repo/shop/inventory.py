"""Stock levels per warehouse."""

from __future__ import annotations

# Warehouses the shop ships from, nearest first.
WAREHOUSES = ("berlin", "lyon", "porto")
LOW_STOCK = 3  # below this many units an item is reordered


class Inventory:
    """Units in stock for each SKU and warehouse."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], int] = {}

    def receive(self, sku: str, warehouse: str, count: int) -> None:
        """Record a delivery of units into one warehouse."""
        key = (sku, warehouse)
        self.units[key] = self.units.get(key, 0) + count

    def reserve(self, sku: str, count: int) -> str | None:
        """Take units from the nearest warehouse that has enough of them."""
        for warehouse in WAREHOUSES:
            if self.units.get((sku, warehouse), 0) >= count:
                self.units[(sku, warehouse)] -= count
                return warehouse
        return None


def needs_reorder(level: int) -> bool:
    """Tell whether a stock level is low enough to order more."""
    return level < LOW_STOCK
