"""Orders: from a cart to a shipped parcel."""

from __future__ import annotations

from shop.cart import Cart
from shop.inventory import Inventory
from shop.shipping import delivery_days, shipping_cost


class Order:
    """A placed order with its price and the warehouse that ships it."""

    def __init__(self, cart: Cart, zone: str) -> None:
        self.cart = cart
        self.zone = zone
        self.warehouse: str | None = None

    def place(self, inventory: Inventory) -> float:
        """Reserve the items and return what the customer pays, shipping included."""
        for sku, (_price, count) in self.cart.lines.items():
            self.warehouse = inventory.reserve(sku, count)
        value = self.cart.total()
        return value + shipping_cost(value, 1.0, self.zone)

    def eta(self) -> int:
        """Days until the parcel arrives."""
        return delivery_days(self.zone)
