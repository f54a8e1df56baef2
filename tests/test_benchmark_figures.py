"""The statistics the benchmark page judges the targets with (benchmarks/figures.py)."""

from __future__ import annotations

import math
import random

from benchmarks.figures import median_interval


def coverage(n: int, k: int) -> float:
    """P(the k-th smallest <= the median <= the k-th largest) of n draws."""
    below = sum(math.comb(n, i) for i in range(k)) / 2 ** n  # P(Binomial(n, 1/2) < k)
    return 1 - 2 * below


def test_the_median_interval_is_the_widest_pair_of_order_statistics_below_90_percent(
        ) -> None:
    for n, k in ((15, 4), (9, 2), (24, 8)):
        values = [float(i) for i in range(1, n + 1)]
        random.Random(n).shuffle(values)
        assert median_interval(values) == (float(k), float(n + 1 - k))
        assert coverage(n, k) >= 0.90 > coverage(n, k + 1)


def test_the_median_interval_ignores_nans_and_needs_two_values() -> None:
    assert median_interval([2.0, math.nan, 1.0]) == (1.0, 2.0)
    low, high = median_interval([1.0])
    assert math.isnan(low) and math.isnan(high)
