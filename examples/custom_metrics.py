"""Collecting custom metrics: a Hook object that keeps per-worker and per-chunk figures.

Run: python examples/custom_metrics.py
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping

from amorsize import Hook, HookContext, HookEvent, execute
from amorsize.hooks import HookCallback


def checksum(n: int) -> int:
    """A few milliseconds of CPU work, more for larger items."""
    total = 0
    for i in range(2_000 + (n % 10) * 1_000):
        total = (total * 31 + i) % 1_000_003
    return total


class ChunkStats(Hook):
    """Chunk durations, items per worker, and how the run ended."""

    def __init__(self) -> None:
        self.chunk_seconds: list[float] = []
        self.items_per_worker: dict[str, int] = defaultdict(int)
        self.summary: dict[str, object] = {}

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Subscribe to the two events this collector needs."""
        return {
            HookEvent.ON_CHUNK_COMPLETE: self.on_chunk,
            HookEvent.POST_EXECUTE: self.on_end,
        }

    def on_chunk(self, ctx: HookContext) -> None:
        """Keep the worker-measured time of each chunk."""
        self.chunk_seconds.append(ctx.chunk_time)
        self.items_per_worker[str(ctx.metadata["worker_key"])] += ctx.chunk_size

    def on_end(self, ctx: HookContext) -> None:
        """Keep the run's totals."""
        self.summary = {
            "status": ctx.status,
            "items": ctx.items_completed,
            "wall seconds": round(ctx.elapsed_time, 3),
            "throughput (items/s)": round(ctx.throughput_items_per_sec, 1),
            "actual speedup": round(ctx.actual_speedup, 2),
            "parallel efficiency": round(ctx.parallel_efficiency, 2),
        }

    def report(self) -> str:
        """The collected figures as text."""
        times = sorted(self.chunk_seconds)
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        lines = [f"{key}: {value}" for key, value in self.summary.items()]
        lines.append(
            f"chunks: {len(times)}  mean {statistics.mean(times) * 1000:.1f} ms  "
            f"p95 {p95 * 1000:.1f} ms  max {times[-1] * 1000:.1f} ms"
        )
        lines.extend(f"worker {key}: {items} items"
                     for key, items in sorted(self.items_per_worker.items()))
        return "\n".join(lines)


def main() -> None:
    """Run a job with the collector attached and print what it gathered."""
    stats = ChunkStats()
    results = execute(checksum, range(600), stats)
    print(f"{len(results)} results")
    print(stats.report())


if __name__ == "__main__":
    main()
