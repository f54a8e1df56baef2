"""Throughput monitoring: live items/s during a run, and a slowdown warning.

Run: python examples/throughput_monitoring.py
"""

from __future__ import annotations

import time

from amorsize import HookContext, HookEvent, HookManager, create_throughput_hook, execute


def lookup(n: int) -> int:
    """I/O-like: the later items are slower, as if a backend got loaded."""
    time.sleep(0.002 if n < 600 else 0.006)
    return n


class SlowdownDetector:
    """Warns when the rate of the last interval falls below half of the best seen."""

    def __init__(self) -> None:
        self.best = 0.0
        self.last: tuple[float, int] = (0.0, 0)
        self.warnings = 0

    def __call__(self, ctx: HookContext) -> None:
        """Compare this interval's rate with the best interval so far."""
        then, done_then = self.last
        self.last = (ctx.elapsed_time, ctx.items_completed)
        if ctx.elapsed_time <= then:
            return
        rate = (ctx.items_completed - done_then) / (ctx.elapsed_time - then)
        self.best = max(self.best, rate)
        if rate < 0.5 * self.best:
            self.warnings += 1
            print(f"  slowdown: {rate:.0f} items/s against a best of {self.best:.0f}")


def main() -> None:
    """Run a job whose rate drops halfway (4 threads), printing the live rate."""
    hooks = HookManager()
    hooks.register(
        HookEvent.ON_PROGRESS,
        create_throughput_hook(lambda rate: print(f"  average so far: {rate:.0f} items/s"),
                               min_interval=0.5),
    )
    detector = SlowdownDetector()
    hooks.register(HookEvent.ON_PROGRESS, detector)
    hooks.register(
        HookEvent.POST_EXECUTE,
        lambda ctx: print(f"final: {ctx.throughput_items_per_sec:.0f} items/s over "
                          f"{ctx.elapsed_time:.2f} s, {ctx.worker_count} workers"),
    )
    execute(lookup, range(1200), hooks, n_jobs=4, progress_interval=0.25)
    print(f"slowdown warnings: {detector.warnings}")


if __name__ == "__main__":
    main()
