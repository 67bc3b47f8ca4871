"""The one percentile used by the benchmarks and the evaluation reports."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (q in 0..100) by linear interpolation, as numpy's default; None for no
    values."""
    if not values:
        return None
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rounded_percentile(values: Sequence[float], q: float, digits: int = 1) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value, digits)


def p50_p95(values: Sequence[float], digits: int = 1) -> dict[str, float | None]:
    """Median, 95th percentile and count, as the benchmark reports print them."""
    return {
        "p50": rounded_percentile(values, 50, digits),
        "p95": rounded_percentile(values, 95, digits),
        "n": len(values),
    }
