"""What a serial run costs over a bare list comprehension, and where it goes:
`python -m benchmarks.serial_overhead [--items N] [--runs R]`.

Cheap items (`x * 2`, ~0.1 us) make the mechanism's own costs visible. Measured in one
process, interleaved, medians of the ratios to the comprehension of the same round:
- execute(): the whole serial run (dry run, decision, events, tasks), on a list and on
  a range (each against a comprehension over the same input);
- one islice: the comprehension fed through itertools.islice (how a task reads its slice);
- slices joined: slices of ~1/64 of a 1.5 s budget from one iterator, their result
  lists joined (how a task looks at the clock without the watchdog: worker._run_slices).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from amorsize import execute
from benchmarks.workloads import double

SLICE = 85_000  # ~1.5 s / 64 of ~0.28 us items (what a cold dry run measures)


def one_islice(data: list[int]) -> list[int]:
    return [double(x) for x in itertools.islice(iter(data), len(data))]


def slices_joined(data: list[int]) -> list[int]:
    reader, out, done = iter(data), None, 0
    while done < len(data):
        size = min(SLICE, len(data) - done)
        part = [double(x) for x in itertools.islice(reader, size)]
        done += size
        if out is None:
            out = part
        else:
            out += part
    return out or []


def comprehension_seconds(data: Sequence[int]) -> float:
    t0 = time.perf_counter()
    baseline = [double(x) for x in data]
    elapsed = time.perf_counter() - t0
    del baseline
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4_000_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    data = list(range(args.items))
    execute(double, data[:1000])  # first-call costs (machine figures) out of the way
    methods: dict[str, Callable[[list[int]], Any]] = {
        "execute()": lambda d: execute(double, d),
        "one islice": one_islice,
        "slices joined": slices_joined,
    }
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    ratios["execute(range)"] = []
    for _ in range(args.runs):
        base = comprehension_seconds(data)
        for name, method in methods.items():
            t0 = time.perf_counter()
            results = method(data)
            ratios[name].append((time.perf_counter() - t0) / base)
            del results
        span = range(args.items)
        base = comprehension_seconds(span)
        t0 = time.perf_counter()
        results = execute(double, span)
        ratios["execute(range)"].append((time.perf_counter() - t0) / base)
        del results
    print(f"{args.items:,} items of x * 2, median of {args.runs} interleaved rounds, "
          "ratio to a list comprehension:")
    for name, values in ratios.items():
        print(f"  {name:14s} {statistics.median(values):.3f}x")


if __name__ == "__main__":
    main()
