"""`verbose=True`: print the decision when a run starts and a summary when it ends.

Printed to standard output, as the original Amorsize did: for scripts and notebooks.
Programs that want records use `LoggingHook` instead.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from amorsize.hooks import Hook, HookContext, RunObserver


def _x(value: Optional[float]) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}x"


class _Printer(RunObserver):
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def on_plan_change(self, ctx: HookContext) -> None:
        print(f"amorsize: plan revised: {ctx.executor_type}, n_jobs={ctx.n_jobs}, "
              f"chunksize={ctx.chunksize} ({ctx.metadata.get('reason', '')})", file=self.out)

    def on_error(self, ctx: HookContext) -> None:
        print(f"amorsize: {ctx.status}: {ctx.error_type}: {ctx.error_message}", file=self.out)

    def on_post_execute(self, ctx: HookContext) -> None:
        print(f"amorsize: {ctx.status}: {ctx.items_completed} items in {ctx.elapsed_time:.3f} s "
              f"({ctx.throughput_items_per_sec:.1f} items/s), speedup {_x(ctx.actual_speedup)} "
              f"(estimated {_x(ctx.first_estimated_speedup)} at the start, "
              f"{_x(ctx.estimated_speedup)} at the end)", file=self.out)


class VerboseHook(Hook):
    """Print each run's decision, plan changes, errors and summary."""

    def __init__(self, out: Optional[TextIO] = None) -> None:
        self.out = out

    def start_run(self, ctx: HookContext) -> RunObserver:
        """Print the decision; return the printer of the rest of the run."""
        out = self.out or sys.stdout
        optimization = ctx.optimization
        text = optimization.explain() if optimization is not None else ctx.executor_type
        print(f"amorsize: {ctx.function}\n{text}", file=out)
        return _Printer(out)
