"""Prices, discounts and taxes for the shop."""

from __future__ import annotations

# Tax rate applied to every order, as a fraction of the net price.
VAT_RATE = 0.2
BULK_THRESHOLD = 10  # items from which the bulk discount applies


def net_price(unit_price: float, quantity: int) -> float:
    """Multiply the unit price by the quantity, before discounts and tax."""
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    return unit_price * quantity


def bulk_discount(total: float, quantity: int, rate: float = 0.05) -> float:
    """Take the bulk discount off a total when enough items are bought."""
    if quantity >= BULK_THRESHOLD:
        return total * (1 - rate)
    return total


def gross_price(net: float) -> float:
    """Add value-added tax to a net price."""
    return round(net * (1 + VAT_RATE), 2)
