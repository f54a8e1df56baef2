"""Where a run's tasks go: the calling process, a thread pool, a process pool, or the
caller's executor. A run has one current lane and may move to another (the old one
finishes its tasks in flight, then closes).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from amorsize import pools, system, warm_pool
from amorsize.arguments import RunOptions
from amorsize.worker import FunctionPayload, TaskFunction


@dataclass
class Lane:
    """The executor a run submits to now, with what it costs to keep (capacity)."""

    kind: str  # "serial" (the calling process), "thread", "process" or "external"
    workers: int
    pool: Optional[pools.ManagedPool]
    task_function: TaskFunction
    started: float = field(default_factory=time.perf_counter)
    ended: Optional[float] = None
    warm: bool = False  # taken from the workers kept warm
    first_report_seen: bool = False

    @property
    def label(self) -> str:
        """The executor type events report: serial, thread, process or external."""
        return self.kind

    def capacity_seconds(self, now: float) -> float:
        """Worker-seconds this lane offered: its workers x the time it was open."""
        return self.workers * max(0.0, (self.ended or now) - self.started)


def task_function(func: Callable[[Any], Any], kind: str) -> TaskFunction:
    """The function as it travels: by reference where pickle can, else by value
    (cloudpickle) for process pools and foreign executors."""
    if kind in ("serial", "thread"):
        return func
    try:
        pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return FunctionPayload(func)
    return func


def open_lane(kind: str, workers: int, func: Callable[[Any], Any],
              options: RunOptions) -> Lane:
    """Start the pool of a lane (or take the one kept warm for this function)."""
    if kind == "serial":
        return Lane("serial", 1, None, func)
    if options.executor is not None:
        pool = pools.external_pool(options.executor, workers)
        return Lane(pool.kind, workers, pool, task_function(func, pool.kind))
    payload = task_function(func, kind)
    if kind == "thread":
        return Lane("thread", workers, pools.thread_pool(workers), payload)
    if options.keep_workers:
        method = (options.mp_context.get_start_method() if options.mp_context is not None
                  else system.start_method())
        warm = warm_pool.acquire(payload, options.n_jobs or workers, method)
        if warm is not None:
            return Lane("process", warm.workers, warm, payload, warm=True)
    pool = pools.process_pool(workers, options.mp_context, options.max_tasks_per_child)
    if options.keep_workers:
        warm_pool.remember(pool, payload)
    return Lane("process", workers, pool, payload)


def close_lane(lane: Lane, graceful: bool, keep_warm: bool) -> None:
    """End a lane: keep its process pool warm if asked and it ended well, else shut it
    down (at once, workers killed, when the run failed)."""
    if lane.ended is None:
        lane.ended = time.perf_counter()
    pool = lane.pool
    if pool is None:
        return
    if graceful and keep_warm and lane.kind == "process" and pool.owned and \
            warm_pool.release(pool):
        return
    pool.close(graceful)
