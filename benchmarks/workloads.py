"""The benchmark workloads: module-level functions (picklable by reference) and inputs.

Each workload is sized so that plain serial takes roughly 0.3-1 s on a 2-core
machine; `quick=True` gives a smaller version for a smoke run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def double(x: int) -> int:
    """Cheap: one multiply."""
    return x * 2


def _spin(x: int, loops: int) -> int:
    total = 0
    for i in range(loops):
        total += (i * x) % 7
    return total


def medium(x: int) -> int:
    """About 75 us of pure-Python work."""
    return _spin(x, 1_400)


def heavy(x: int) -> int:
    """About 5 ms of pure-Python work."""
    return _spin(x, 95_000)


def mixed(x: int) -> int:
    """Heterogeneous: most items ~20 us, one in 50 about 100 times more."""
    if (x * 7919) % 50 == 17:
        return _spin(x, 26_000)
    return _spin(x, 260)


def large_result(x: int) -> bytes:
    """About 150 us of work returning 128 KB: moving the result dominates."""
    _spin(x, 2_000)
    return x.to_bytes(8, "little") * 16_384


def io_bound(x: int) -> int:
    """I/O-bound: a 2 ms sleep (releases the GIL)."""
    time.sleep(0.002)
    return x


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: the function and how many items it runs over."""

    name: str
    description: str
    func: Callable[[Any], Any]
    items: int
    quick_items: int

    def data(self, quick: bool = False) -> Sequence[int]:
        """Return the input (a range: a Sequence, like a list, but cheap to build)."""
        return range(self.quick_items if quick else self.items)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("cheap", "x * 2 over 4M ints", double, 4_000_000, 1_000_000),
        Workload("medium", "~75 us pure Python x 6000", medium, 6_000, 2_000),
        Workload("heavy", "~5 ms pure Python x 160", heavy, 160, 48),
        Workload("heterogeneous", "2% of items 100x dearer, x 10000", mixed, 10_000, 3_000),
        Workload("large_results", "~150 us, 128 KB result x 2000", large_result, 2_000, 500),
        Workload("io_bound", "2 ms sleep x 250", io_bound, 250, 80),
    )
}


def fine(x: int) -> int:
    """Fine-grained: about 5 us of pure-Python work (the hook overhead benchmark)."""
    return _spin(x, 80)
