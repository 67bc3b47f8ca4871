"""A shopping cart that prices its lines."""

from __future__ import annotations

from shop.pricing import bulk_discount, gross_price, net_price


class Cart:
    """Items a customer is about to buy, with their quantities."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[float, int]] = {}

    def add_item(self, sku: str, unit_price: float, quantity: int = 1) -> None:
        """Put an item into the cart or raise its quantity."""
        price, count = self.lines.get(sku, (unit_price, 0))
        self.lines[sku] = (price, count + quantity)

    def total(self) -> float:
        """The price of every line with discounts and tax."""
        amount = 0.0
        for price, count in self.lines.values():
            amount += bulk_discount(net_price(price, count), count)
        return gross_price(amount)


def empty_cart() -> Cart:
    """Create a cart without any items."""
    cart = Cart()
    return cart
