"""The parent publishes: turn worker reports into hook events.

One `RunPublisher` per execute(). It keeps the run's tallies (items, chunks, workers
and their busy time) from the `ChunkReport`s the workers return, and fires the seven
events with the fields DESIGN.md lists. With no hooks registered it builds no
`HookContext` at all.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from amorsize.hooks import HookContext, HookEvent, HookManager
from amorsize.worker import ChunkReport

if TYPE_CHECKING:
    from amorsize.optimizer import OptimizationResult


@dataclass
class WorkerTally:
    """What one worker did in this run."""

    worker_id: int
    worker_key: str
    pid: int
    started_at: float
    chunks: int = 0
    items: int = 0
    busy_seconds: float = 0.0


class RunPublisher:
    """Fires the hook events of one run from worker-measured reports."""

    def __init__(
        self,
        manager: Optional[HookManager],
        *,
        function: str,
        execution_id: str,
        started: float,
        wall_started: float,
        optimization: OptimizationResult,
        progress_interval: float = 0.5,
    ) -> None:
        self.manager = manager
        self.active = manager.active_events() if manager is not None else frozenset()
        self.function = function
        self.execution_id = execution_id
        self.started = started
        self.wall_started = wall_started
        self.optimization = optimization
        self.n_jobs = optimization.n_jobs
        self.chunksize = optimization.chunksize
        self.total_items = optimization.total_items
        self.progress_interval = progress_interval
        self.items_completed = 0
        self.chunks_completed = 0
        self.workers: dict[str, WorkerTally] = {}
        self._last_progress = float("-inf")
        self._progress_done = False  # the last ON_PROGRESS fired was at 100 %
        self._finished = False

    # ------------------------------------------------------------------ helpers

    def _fire(self, event: HookEvent, **fields: Any) -> None:
        manager = self.manager
        if manager is None or event not in self.active:
            return
        elapsed = time.perf_counter() - self.started
        metadata = {"execution_id": self.execution_id, "function": self.function}
        metadata.update(fields.pop("metadata", {}))
        fields.setdefault("items_completed", self.items_completed)
        manager.trigger(
            HookContext(
                event=event,
                n_jobs=self.n_jobs,
                chunksize=self.chunksize,
                total_items=self.total_items,
                elapsed_time=elapsed,
                metadata=metadata,
                **fields,
            )
        )

    @property
    def busy_seconds(self) -> float:
        """Sum of worker-measured compute time so far."""
        return sum(w.busy_seconds for w in self.workers.values())

    def _rates(self, elapsed: float) -> dict[str, Any]:
        done = self.items_completed
        throughput = done / elapsed if elapsed > 0 else 0.0
        total = self.total_items
        remaining = None if total is None else max(0, total - done)
        rates: dict[str, Any] = {
            "throughput_items_per_sec": throughput,
            "items_remaining": remaining,
            "percent_complete": _percent(done, total),
            "avg_item_time": self.busy_seconds / done if done else None,
        }
        if remaining is not None and throughput > 0:
            rates["estimated_time_remaining"] = remaining / throughput
        return rates

    # ------------------------------------------------------------------ events

    def pre_execute(self) -> None:
        """PRE_EXECUTE: the decision is made, no work submitted yet."""
        opt = self.optimization
        self._fire(
            HookEvent.PRE_EXECUTE,
            metadata={
                "executor_type": opt.executor_type,
                "estimated_speedup": opt.estimated_speedup,
                "reason": opt.reason,
                "start_time": self.wall_started,
                "optimization_seconds": opt.optimization_seconds,
                "optimization": opt,
                "pid": os.getpid(),
            },
        )

    def chunk(self, report: ChunkReport, *, sampled: bool = False) -> None:
        """A task finished: tally it, fire ON_WORKER_START (first time), ON_CHUNK_COMPLETE
        and a throttled ON_PROGRESS."""
        tally = self.workers.get(report.worker_key)
        if tally is None:
            tally = WorkerTally(
                worker_id=len(self.workers),
                worker_key=report.worker_key,
                pid=report.pid,
                started_at=report.worker_started_at,
            )
            self.workers[report.worker_key] = tally
            self._fire(
                HookEvent.ON_WORKER_START,
                worker_id=tally.worker_id,
                worker_count=len(self.workers),
                metadata={
                    "pid": report.pid,
                    "worker_key": report.worker_key,
                    "worker_started_at": report.worker_started_at,
                },
            )
        done_items = len(report.results)
        tally.chunks += 1
        tally.items += done_items
        tally.busy_seconds += report.duration
        if report.error is None:
            self.items_completed += done_items
            self.chunks_completed += 1
            self._fire(
                HookEvent.ON_CHUNK_COMPLETE,
                worker_id=tally.worker_id,
                worker_count=len(self.workers),
                chunk_id=report.chunk_id,
                chunk_size=report.item_count,
                chunk_time=report.duration,
                metadata={
                    "pid": report.pid,
                    "worker_key": report.worker_key,
                    "start_time": report.wall_start,
                    "end_time": report.wall_end,
                    "sampled": sampled,
                },
            )
            if HookEvent.ON_PROGRESS in self.active:
                now = time.perf_counter()
                if now - self._last_progress >= self.progress_interval:
                    self._last_progress = now
                    self._progress(now - self.started)

    def _progress(self, elapsed: float) -> None:
        rates = self._rates(elapsed)
        self._progress_done = rates["percent_complete"] == 100.0
        self._fire(HookEvent.ON_PROGRESS, **rates)

    def error(
        self,
        error: BaseException,
        traceback_text: Optional[str],
        *,
        status: str,
        report: Optional[ChunkReport] = None,
    ) -> None:
        """ON_ERROR: the function raised, a worker died, or the run was cancelled."""
        metadata: dict[str, Any] = {"status": status, "error_type": type(error).__name__}
        fields: dict[str, Any] = {}
        if report is not None:
            tally = self.workers.get(report.worker_key)
            fields = {"chunk_id": report.chunk_id, "chunk_size": report.item_count,
                      "chunk_time": report.duration}
            if tally is not None:
                fields["worker_id"] = tally.worker_id
            metadata.update({"pid": report.pid, "start_time": report.wall_start,
                             "end_time": report.wall_end})
        self._fire(
            HookEvent.ON_ERROR,
            error=error,
            error_message=str(error),
            error_traceback=traceback_text,
            metadata=metadata,
            **fields,
        )

    def finish(self, status: str, results_count: int) -> None:
        """Final ON_PROGRESS (success), ON_WORKER_END per worker, then POST_EXECUTE."""
        if self._finished:
            return
        self._finished = True
        elapsed = time.perf_counter() - self.started
        if status == "success":
            if self.total_items is None:
                self.total_items = self.items_completed
            if HookEvent.ON_PROGRESS in self.active and not self._progress_done:
                self._progress(elapsed)
        for tally in self.workers.values():
            self._fire(
                HookEvent.ON_WORKER_END,
                worker_id=tally.worker_id,
                worker_count=len(self.workers),
                metadata={
                    "pid": tally.pid,
                    "worker_key": tally.worker_key,
                    "chunks": tally.chunks,
                    "items": tally.items,
                    "busy_seconds": tally.busy_seconds,
                },
            )
        busy = self.busy_seconds
        actual_speedup = busy / elapsed if elapsed > 0 else 0.0
        efficiency = busy / (elapsed * self.n_jobs) if elapsed > 0 else 0.0
        self._fire(
            HookEvent.POST_EXECUTE,
            results_count=results_count,
            throughput_items_per_sec=self.items_completed / elapsed if elapsed > 0 else 0.0,
            metadata={
                "status": status,
                "executor_type": self.optimization.executor_type,
                "estimated_speedup": self.optimization.estimated_speedup,
                "actual_speedup": actual_speedup,
                "parallel_efficiency": efficiency,
                "busy_seconds": busy,
                "chunks_completed": self.chunks_completed,
                "worker_count": len(self.workers),
                "end_time": time.time(),
            },
        )


def _percent(done: int, total: Optional[int]) -> Optional[float]:
    """Percent complete; None when the total is unknown, 100 for an empty job."""
    if total is None:
        return None
    if total <= 0:
        return 100.0
    return min(100.0, 100.0 * done / total)
