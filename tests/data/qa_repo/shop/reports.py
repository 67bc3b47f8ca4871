"""Sales reports."""

from __future__ import annotations

from shop.orders import Order


def revenue(orders: list[Order]) -> float:
    """Sum what every order in the list was paid."""
    total = 0.0
    for order in orders:
        total += order.cart.total()
    return total


def busiest_zone(orders: list[Order]) -> str | None:
    """Find the shipping zone with the most orders."""
    counts: dict[str, int] = {}
    for order in orders:
        counts[order.zone] = counts.get(order.zone, 0) + 1
    return max(counts, key=counts.get) if counts else None
