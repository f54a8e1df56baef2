"""A small live console dashboard built from hook events only.

Redraws in place on a terminal; elsewhere (a pipe, CI) prints a snapshot per update.
Run: python examples/live_console_dashboard.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO

from amorsize import Hook, HookContext, HookEvent, execute
from amorsize.hooks import HookCallback


def simulate(n: int) -> int:
    """Uneven CPU work: a few items are ten times heavier."""
    loops = 40_000 if n % 25 == 0 else 4_000
    total = 0
    for i in range(loops):
        total += i % 7
    return total


class ConsoleDashboard(Hook):
    """Per-worker items and busy time, overall progress, rate and ETA."""

    def __init__(self, out: TextIO = sys.stdout, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.live = out.isatty()
        self.header = ""
        self.workers: dict[int, dict[str, float]] = {}
        self.progress: dict[str, object] = {}
        self._drawn_lines = 0
        self.frames = 0

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """The events that change what is shown."""
        return {
            HookEvent.PRE_EXECUTE: self.on_start,
            HookEvent.ON_CHUNK_COMPLETE: self.on_chunk,
            HookEvent.ON_PROGRESS: self.on_progress,
            HookEvent.POST_EXECUTE: self.on_end,
        }

    def on_start(self, ctx: HookContext) -> None:
        """Show the decision."""
        self.header = (f"{ctx.function}  {ctx.executor_type} "
                       f"x{ctx.n_jobs}  chunksize {ctx.chunksize}")

    def on_chunk(self, ctx: HookContext) -> None:
        """Tally what each worker did."""
        worker = self.workers.setdefault(ctx.worker_id or 0, {"items": 0, "busy": 0.0})
        worker["items"] += ctx.chunk_size
        worker["busy"] += ctx.chunk_time

    def on_progress(self, ctx: HookContext) -> None:
        """Redraw with the latest figures."""
        eta = ctx.estimated_time_remaining
        self.progress = {
            "done": ctx.items_completed,
            "total": ctx.total_items,
            "percent": ctx.percent_complete or 0.0,
            "rate": ctx.throughput_items_per_sec,
            "eta": "?" if eta is None else f"{eta:.1f}s",
        }
        self.draw()

    def on_end(self, ctx: HookContext) -> None:
        """Last line: the outcome."""
        self.out.write(f"{ctx.status}: speedup "
                       f"{ctx.actual_speedup:.2f}x, efficiency "
                       f"{ctx.parallel_efficiency:.0%}\n")

    def draw(self) -> None:
        """Render the dashboard (in place on a terminal)."""
        p = self.progress
        filled = int(self.width * float(p["percent"]) / 100)  # type: ignore[arg-type]
        lines = [
            self.header,
            f"[{'#' * filled}{'.' * (self.width - filled)}] {p['percent']:5.1f}%  "
            f"{p['done']}/{p['total']}  {p['rate']:.0f} items/s  ETA {p['eta']}",
        ]
        for worker_id, tally in sorted(self.workers.items()):
            lines.append(f"  worker {worker_id}: {int(tally['items']):5d} items  "
                         f"busy {tally['busy']:.2f}s")
        if self.live and self._drawn_lines:
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn_lines = len(lines)
        self.frames += 1


def main() -> None:
    """Run an uneven job under the dashboard."""
    dashboard = ConsoleDashboard()
    started = time.perf_counter()
    results = execute(simulate, range(3000), dashboard, progress_interval=0.3,
                      target_chunk_duration=0.05)
    print(f"{len(results)} results in {time.perf_counter() - started:.2f} s, "
          f"{dashboard.frames} frames drawn")


if __name__ == "__main__":
    main()
