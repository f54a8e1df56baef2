"""Quick start: let amorsize decide how to run three kinds of job, and show why."""

from __future__ import annotations

import time

from amorsize import HookEvent, HookManager, execute


def cheap(x: int) -> int:
    """Too cheap to be worth sending to another process."""
    return x * 3


def heavy(x: int) -> int:
    """A few milliseconds of pure-Python work per item."""
    total = 0
    for i in range(40_000):
        total += (i * x) % 7
    return total


def io_bound(x: int) -> int:
    """Waits, like a network call: threads overlap the waiting."""
    time.sleep(0.01)
    return x


def main() -> None:
    """Run each job and print the decision, wall time and speedup."""
    hooks = HookManager()
    finished: list[float] = []
    hooks.register(HookEvent.POST_EXECUTE, lambda ctx: finished.append(ctx.elapsed_time))
    for func, data in ((cheap, range(1_000_000)), (heavy, range(300)), (io_bound, range(200))):
        started = time.perf_counter()
        results, decision = execute(func, data, hooks, return_optimization_result=True)
        wall = time.perf_counter() - started
        print(
            f"{func.__name__:9s} {len(results):8d} items  {decision.executor_type:7s} "
            f"n_jobs={decision.n_jobs:<3d} chunksize={decision.chunksize:<7d} "
            f"wall {wall:.3f} s  estimated speedup {decision.estimated_speedup:.2f}x"
        )
        print(f"          {decision.reason}")


if __name__ == "__main__":
    main()
