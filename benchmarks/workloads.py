"""The benchmark workloads: module-level functions (picklable by reference) and inputs.

Each workload is sized so that plain serial takes roughly 0.3-1 s on a 2-core
machine; `quick=True` gives a smaller version for a smoke run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional


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


def loops(n: int) -> int:
    """An item that is its own cost: n loop iterations (~53 ns each, ~5 us per 100)."""
    return _spin(n, n)


# The rising workload's items: ~1 us (20 loops) up to ~0.5 ms (9017 loops). The quick
# version takes every third of them, so its cost profile is the same.
_RISING = range(20, 9_020, 3)


def _step(quick: bool) -> list[int]:
    """Half the items ~11 us (200 loops), then half ~0.53 ms (10,000 loops)."""
    half = 350 if quick else 1_000
    return [200] * half + [10_000] * half


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: the function and the input it runs over."""

    name: str
    description: str
    func: Callable[[Any], Any]
    items: int
    quick_items: int
    # Builds the input (quick: bool) where it is not simply range(items).
    make: Optional[Callable[[bool], Sequence[int]]] = None

    def data(self, quick: bool = False) -> Sequence[int]:
        """Return the input (a range where possible: a Sequence, like a list, but cheap
        to build)."""
        if self.make is not None:
            return self.make(quick)
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
        Workload("rising", "item cost rises along the input, ~1 us to ~0.5 ms (450x), x 3000",
                 loops, len(_RISING), len(_RISING[::3]),
                 lambda quick: _RISING[::3] if quick else _RISING),
        Workload("falling", "the rising items in reverse: cost falls ~0.5 ms to ~1 us, x 3000",
                 loops, len(_RISING), len(_RISING[::3]),
                 lambda quick: (_RISING[::3] if quick else _RISING)[::-1]),
        Workload("step", "1000 items of ~11 us, then 1000 of ~0.53 ms (a 50x step halfway)",
                 loops, 2_000, 700, _step),
    )
}


def fine(x: int) -> int:
    """Fine-grained: about 5 us of pure-Python work (the hook overhead benchmark)."""
    return _spin(x, 80)
