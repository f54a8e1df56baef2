"""Timing several stages of a pipeline, each its own execute() with its own decision.

Run: python examples/timing_stages.py
"""

from __future__ import annotations

import time

from amorsize import HookContext, HookEvent, HookManager, execute


def fetch(n: int) -> str:
    """Stage 1, I/O-like: waits (threads overlap the waiting)."""
    time.sleep(0.005)
    return f"record-{n}"


def parse(record: str) -> int:
    """Stage 2, cheap: too little work per item for any pool."""
    return int(record.rsplit("-", 1)[1])


def score(n: int) -> int:
    """Stage 3, CPU-bound: pure Python arithmetic."""
    total = 0
    for i in range(15_000):
        total += (i * n) % 13
    return total


class StageTimer:
    """Collects, per stage, the decision and the timings the events report."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.hooks = HookManager()
        self.hooks.register(HookEvent.PRE_EXECUTE, self.on_start)
        self.hooks.register(HookEvent.POST_EXECUTE, self.on_end)
        self._current: dict[str, object] = {}

    def on_start(self, ctx: HookContext) -> None:
        """Remember the decision."""
        self._current = {
            "function": ctx.function,
            "executor": ctx.executor_type,
            "n_jobs": ctx.n_jobs,
            "optimize s": ctx.metadata["optimization_seconds"],
        }

    def on_end(self, ctx: HookContext) -> None:
        """Add the stage's wall time and throughput."""
        self._current.update(total_s=ctx.elapsed_time, items=ctx.items_completed,
                             rate=ctx.throughput_items_per_sec)
        self.rows.append(self._current)

    def table(self) -> str:
        """One line per stage."""
        lines = [f"{'stage':28s} {'executor':8s} {'jobs':>4s} {'items':>6s} "
                 f"{'optimize':>9s} {'total':>8s} {'items/s':>9s}"]
        for row in self.rows:
            lines.append(
                f"{row['function']!s:28s} {row['executor']!s:8s} {row['n_jobs']!s:>4s} "
                f"{row['items']!s:>6s} {row['optimize s']:>8.3f}s {row['total_s']:>7.3f}s "
                f"{row['rate']:>9.0f}"
            )
        return "\n".join(lines)


def main() -> None:
    """Run the three stages and print where the time went."""
    timer = StageTimer()
    started = time.perf_counter()
    records = execute(fetch, range(300), timer.hooks)
    numbers = execute(parse, records, timer.hooks)
    scores = execute(score, numbers, timer.hooks)
    wall = time.perf_counter() - started
    print(timer.table())
    print(f"pipeline: {len(scores)} items in {wall:.3f} s")


if __name__ == "__main__":
    main()
