"""Shipping costs and delivery estimates."""

from __future__ import annotations

FREE_SHIPPING_FROM = 50.0  # order value from which shipping costs nothing
DAYS_PER_ZONE = {"domestic": 2, "europe": 4, "world": 9}


def shipping_cost(order_value: float, weight_kg: float, zone: str = "domestic") -> float:
    """Compute the shipping cost of a parcel from its weight and zone."""
    if order_value >= FREE_SHIPPING_FROM:
        return 0.0
    base = 4.5 if zone == "domestic" else 12.0
    return base + 0.8 * weight_kg


def delivery_days(zone):
    days = DAYS_PER_ZONE.get(zone)
    if days is None:
        raise KeyError(zone)
    return days
