"""The parent publishes: turn worker reports into hook events.

One `RunPublisher` per execute(). It keeps the run's tallies (items, chunks, workers
and their busy time) from the `ChunkReport`s the workers return, and fires the events
with the fields docs/design.md lists: to the callbacks of the run's managers, and to
the run's observers (one per integration, made at PRE_EXECUTE by `Hook.start_run`).
An event nobody listens to costs no `HookContext`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from amorsize.hook_manager import RunHooks
from amorsize.hooks import (
    OBSERVER_METHODS,
    Hook,
    HookCallback,
    HookContext,
    HookEvent,
    RunObserver,
    observed_events,
    report_hook_failure,
)
from amorsize.names import STATUS_SUCCESS
from amorsize.worker import ChunkReport


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


class _CallbackObserver(RunObserver):
    """A Hook's plain callbacks, for one run (a Hook passed in hooks= directly)."""

    def __init__(self, callbacks: Mapping[HookEvent, HookCallback]) -> None:
        self.callbacks = dict(callbacks)

    def events(self) -> frozenset[HookEvent]:
        return frozenset(self.callbacks)

    def call(self, ctx: HookContext) -> None:
        callback = self.callbacks.get(ctx.event)
        if callback is not None:
            callback(ctx)


@dataclass(frozen=True)
class RunIdentity:
    """What names one run in every event."""

    execution_id: str
    function: str
    started: float  # perf_counter at the start of execute()
    wall_started: float  # time.time() at the start of execute()


class RunPublisher:
    """Fires the hook events of one run from worker-measured reports."""

    def __init__(self, hooks: RunHooks, identity: RunIdentity, *, total_items: Optional[int],
                 progress_interval: float = 0.5) -> None:
        self.hooks = hooks
        self.identity = identity
        self.total_items = total_items
        self.progress_interval = progress_interval
        self.executor_type = ""
        self.n_jobs = 0
        self.chunksize = 0
        self.estimated_speedup: Optional[float] = None
        self.first_estimated_speedup: Optional[float] = None
        self.optimization: Any = None
        self.items_completed = 0
        self.chunks_completed = 0
        self.workers: dict[str, WorkerTally] = {}
        self._observers: list[RunObserver] = []
        self._callback_observers: list[_CallbackObserver] = []
        self._active: frozenset[HookEvent] = frozenset()
        for manager in hooks.managers:
            self._active |= manager.active_events()
        self._last_progress = float("-inf")
        self._progress_done = False
        self._finished = False

    # ------------------------------------------------------------------ dispatch

    def listens(self, event: HookEvent) -> bool:
        """Whether any callback or observer wants `event`."""
        return event in self._active

    def _context(self, event: HookEvent, **fields: Any) -> HookContext:
        identity = self.identity
        fields.setdefault("items_completed", self.items_completed)
        return HookContext(
            event=event, execution_id=identity.execution_id, function=identity.function,
            executor_type=self.executor_type, run_started_at=identity.wall_started,
            n_jobs=self.n_jobs, chunksize=self.chunksize, total_items=self.total_items,
            estimated_speedup=self.estimated_speedup,
            first_estimated_speedup=self.first_estimated_speedup,
            elapsed_time=time.perf_counter() - identity.started, **fields)

    def _fire(self, event: HookEvent, **fields: Any) -> None:
        if event not in self._active:
            return
        ctx = self._context(event, **fields)
        for manager in self.hooks.managers:
            manager.trigger(ctx)
        for wrapped in self._callback_observers:
            try:
                wrapped.call(ctx)
            except Exception:
                report_hook_failure(event, wrapped.callbacks.get(event))
        method = OBSERVER_METHODS.get(event)
        if method is None:
            return
        for observer in self._observers:
            try:
                getattr(observer, method)(ctx)
            except Exception:
                report_hook_failure(event, observer)

    # ------------------------------------------------------------------ events

    def pre_execute(self, optimization: Any, *, optimization_seconds: float) -> None:
        """PRE_EXECUTE: the decision is made, no work submitted yet. Starts the run's
        observers."""
        self._set_plan(optimization)
        self.first_estimated_speedup = self.estimated_speedup
        objects: list[Hook] = []
        for manager in self.hooks.managers:
            objects.extend(h for h in manager.hook_objects() if h not in objects)
        objects.extend(h for h in self.hooks.hooks if h not in objects)
        for hook in self.hooks.hooks:
            callbacks = hook.callbacks()
            if callbacks:
                self._callback_observers.append(_CallbackObserver(callbacks))
        if not (objects or HookEvent.PRE_EXECUTE in self._active):
            return  # nobody listens: no context at all
        ctx = self._context(
            HookEvent.PRE_EXECUTE, optimization=optimization, pid=os.getpid(),
            metadata={"executor_type": optimization.executor_type,
                      "estimated_speedup": optimization.estimated_speedup,
                      "reason": optimization.reason,
                      "optimization_seconds": optimization_seconds})
        for manager in self.hooks.managers:
            manager.trigger(ctx)
        for wrapped in self._callback_observers:
            try:
                wrapped.call(ctx)
            except Exception:
                report_hook_failure(HookEvent.PRE_EXECUTE, wrapped)
        for hook in objects:
            try:
                observer = hook.start_run(ctx)
            except Exception:
                report_hook_failure(HookEvent.PRE_EXECUTE, hook)
                continue
            if observer is not None:
                self._observers.append(observer)
                self._active |= observed_events(observer)
        for wrapped in self._callback_observers:
            self._active |= wrapped.events()

    def _set_plan(self, optimization: Any) -> None:
        self.optimization = optimization
        self.executor_type = optimization.executor_type
        self.n_jobs = optimization.n_jobs
        self.chunksize = optimization.chunksize
        self.estimated_speedup = optimization.estimated_speedup

    def plan_change(self, optimization: Any, reason: str) -> None:
        """ON_PLAN_CHANGE: the run revised its plan."""
        self._set_plan(optimization)
        self._fire(HookEvent.ON_PLAN_CHANGE, optimization=optimization,
                   metadata={"reason": reason})

    def revise_estimate(self, estimate: Optional[float]) -> None:
        """Carry a revised speedup estimate in the events from now on."""
        if estimate is not None:
            self.estimated_speedup = estimate

    def chunk(self, report: ChunkReport) -> None:
        """A task finished: tally it, fire ON_WORKER_START (first time), ON_CHUNK_COMPLETE
        and a throttled ON_PROGRESS. A failed task is tallied only (see error())."""
        tally = None if report.sampled else self._tally(report)
        done = report.done
        if tally is not None:
            tally.chunks += 1
            tally.items += done
            tally.busy_seconds += report.duration
        if report.error is not None:
            return
        self.items_completed += done
        self.chunks_completed += 1
        active = self._active
        if HookEvent.ON_CHUNK_COMPLETE in active:
            self._fire(HookEvent.ON_CHUNK_COMPLETE, **self._chunk_fields(report, tally))
        if HookEvent.ON_PROGRESS in active:
            now = time.perf_counter()
            if now - self._last_progress >= self.progress_interval:
                self._last_progress = now
                self._progress(now - self.identity.started)

    def _tally(self, report: ChunkReport) -> WorkerTally:
        tally = self.workers.get(report.worker_key)
        if tally is None:
            tally = WorkerTally(len(self.workers), report.worker_key, report.pid,
                                report.worker_started_at)
            self.workers[report.worker_key] = tally
            self._fire(HookEvent.ON_WORKER_START, worker_id=tally.worker_id,
                       worker_count=len(self.workers), pid=report.pid,
                       metadata={"worker_key": report.worker_key,
                                 "worker_started_at": report.worker_started_at})
        return tally

    def _chunk_fields(self, report: ChunkReport, tally: Optional[WorkerTally]) -> dict[str, Any]:
        return {
            "worker_id": None if tally is None else tally.worker_id,
            "worker_count": len(self.workers), "pid": report.pid,
            "chunk_id": report.chunk_id, "chunk_size": report.done,
            "chunk_time": report.duration, "chunk_started_at": report.wall_start,
            "chunk_ended_at": report.wall_end, "chunk_start_index": report.start_index,
            "sampled": report.sampled, "metadata": {"worker_key": report.worker_key},
        }

    def _rates(self, elapsed: float) -> dict[str, Any]:
        done = self.items_completed
        throughput = done / elapsed if elapsed > 0 else 0.0
        total = self.total_items
        remaining = None if total is None else max(0, total - done)
        busy = sum(w.busy_seconds for w in self.workers.values())
        rates: dict[str, Any] = {
            "throughput_items_per_sec": throughput, "items_remaining": remaining,
            "percent_complete": _percent(done, total),
            "avg_item_time": busy / done if done and busy else None,
        }
        if remaining is not None and throughput > 0:
            rates["estimated_time_remaining"] = remaining / throughput
        return rates

    def _progress(self, elapsed: float) -> None:
        rates = self._rates(elapsed)
        self._progress_done = rates["percent_complete"] == 100.0
        self._fire(HookEvent.ON_PROGRESS, **rates)

    def error(self, error: BaseException, traceback_text: Optional[str], *, status: str,
              report: Optional[ChunkReport] = None) -> None:
        """ON_ERROR: the function raised, a worker died, a task timed out, or the run
        was cancelled."""
        fields: dict[str, Any] = {}
        if report is not None:
            tally = None if report.sampled else self.workers.get(report.worker_key)
            fields = self._chunk_fields(report, tally)
            fields["chunk_size"] = report.item_count
        self._fire(HookEvent.ON_ERROR, error=error, error_type=type(error).__name__,
                   error_message=str(error), error_traceback=traceback_text, status=status,
                   **fields)

    def finish(self, status: str, results_count: int, *, serial_seconds: float,
               capacity_seconds: float, final_estimate: Optional[float]) -> None:
        """Final ON_PROGRESS (success), ON_WORKER_END per worker, then POST_EXECUTE."""
        if self._finished:
            return
        self._finished = True
        elapsed = time.perf_counter() - self.identity.started
        if status == STATUS_SUCCESS:
            if self.total_items is None:
                self.total_items = self.items_completed
            if HookEvent.ON_PROGRESS in self._active and not self._progress_done:
                self._progress(elapsed)
        for tally in self.workers.values():
            self._fire(HookEvent.ON_WORKER_END, worker_id=tally.worker_id,
                       worker_count=len(self.workers), pid=tally.pid,
                       metadata={"worker_key": tally.worker_key, "chunks": tally.chunks,
                                 "items": tally.items, "busy_seconds": tally.busy_seconds})
        busy = sum(w.busy_seconds for w in self.workers.values())
        actual = serial_seconds / elapsed if elapsed > 0 else None
        efficiency = busy / capacity_seconds if capacity_seconds > 0 else None
        if final_estimate is not None:
            self.estimated_speedup = final_estimate
        rates = self._rates(elapsed)
        self._fire(
            HookEvent.POST_EXECUTE, status=status, results_count=results_count,
            actual_speedup=actual, parallel_efficiency=efficiency, busy_seconds=busy,
            worker_count=len(self.workers), optimization=self.optimization, pid=os.getpid(),
            **rates,
            metadata={"status": status, "executor_type": self.executor_type,
                      "estimated_speedup": self.estimated_speedup,
                      "first_estimated_speedup": self.first_estimated_speedup,
                      "actual_speedup": actual, "parallel_efficiency": efficiency,
                      "busy_seconds": busy, "capacity_seconds": capacity_seconds,
                      "chunks_completed": self.chunks_completed,
                      "worker_count": len(self.workers), "end_time": time.time()})
        self._observers.clear()
        self._callback_observers.clear()


def _percent(done: int, total: Optional[int]) -> Optional[float]:
    """Percent complete; None when the total is unknown, 100 for an empty job."""
    if total is None:
        return None
    if total <= 0:
        return 100.0
    return min(100.0, 100.0 * done / total)
