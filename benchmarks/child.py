"""One measurement, run in its own fresh process: `python -m benchmarks.child SPEC_JSON`.

The parent (benchmarks/run.py) starts one child per measurement so that every method
starts cold (no warm pool, no cached machine costs) and a runaway method can be killed
at a time limit. The child prints one JSON line with what it measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.pool import Pool, ThreadPool
from typing import Any, Optional

import psutil

from benchmarks.workloads import WORKLOADS, double

Config = tuple[str, int, int]  # (executor kind, n_jobs, chunksize); ("serial", 1, 0)


def time_serial(func: Callable[[Any], Any], data: Sequence[Any]) -> float:
    """Plain serial: a list comprehension."""
    t0 = time.perf_counter()
    results = [func(x) for x in data]
    elapsed = time.perf_counter() - t0
    del results
    return elapsed


def time_pool(func: Callable[[Any], Any], data: Sequence[Any]) -> float:
    """multiprocessing.Pool().map with every default."""
    t0 = time.perf_counter()
    with multiprocessing.Pool() as pool:
        results = pool.map(func, data)
    elapsed = time.perf_counter() - t0
    del results
    return elapsed


def time_joblib(func: Callable[[Any], Any], data: Sequence[Any]) -> float:
    """joblib.Parallel(n_jobs=-1) with every other default (loky, batch_size='auto')."""
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    results = Parallel(n_jobs=-1)(delayed(func)(x) for x in data)
    elapsed = time.perf_counter() - t0
    del results
    return elapsed


def time_mpire(func: Callable[[Any], Any], data: Sequence[Any]) -> float:
    """mpire.WorkerPool() with every default."""
    from mpire import WorkerPool

    t0 = time.perf_counter()
    with WorkerPool() as pool:
        results = pool.map(func, data)
    elapsed = time.perf_counter() - t0
    del results
    return elapsed


class RunRecorder:
    """Hook callbacks that keep what one execute() reported: the decision, the plan
    changes, every task as its worker measured it, and the outcome."""

    def __init__(self) -> None:
        from amorsize import HookEvent, HookManager

        self.manager = HookManager()
        self.decision: dict[str, Any] = {}
        self.revisions: list[dict[str, Any]] = []
        # [start (s after execute() began), worker-measured seconds, items, worker_id,
        #  sampled, executor type of the plan when it was reported]
        self.chunks: list[list[Any]] = []
        self.outcome: dict[str, Any] = {}
        self.manager.register(HookEvent.PRE_EXECUTE, self.pre)
        self.manager.register(HookEvent.ON_PLAN_CHANGE, self.plan_change)
        self.manager.register(HookEvent.ON_CHUNK_COMPLETE, self.chunk)
        self.manager.register(HookEvent.POST_EXECUTE, self.post)

    def pre(self, ctx: Any) -> None:
        """PRE_EXECUTE: the first plan and what deciding it cost."""
        self.decision = {
            "executor_type": ctx.executor_type, "n_jobs": ctx.n_jobs,
            "chunksize": ctx.chunksize, "estimated_speedup": ctx.estimated_speedup,
            "optimization_seconds": ctx.metadata.get("optimization_seconds"),
            "reason": ctx.metadata.get("reason"),
        }

    def plan_change(self, ctx: Any) -> None:
        """ON_PLAN_CHANGE: a revised plan."""
        self.revisions.append({
            "at": ctx.elapsed_time, "executor_type": ctx.executor_type,
            "n_jobs": ctx.n_jobs, "chunksize": ctx.chunksize,
            "estimated_speedup": ctx.estimated_speedup,
            "reason": ctx.metadata.get("reason"),
        })

    def chunk(self, ctx: Any) -> None:
        """ON_CHUNK_COMPLETE: one task, timed by its worker."""
        start = (ctx.chunk_started_at - ctx.run_started_at
                 if ctx.chunk_started_at is not None and ctx.run_started_at else None)
        self.chunks.append([start, ctx.chunk_time, ctx.chunk_size, ctx.worker_id,
                            ctx.sampled, ctx.executor_type])

    def post(self, ctx: Any) -> None:
        """POST_EXECUTE: the first and final estimates and the achieved speedup."""
        self.outcome = {
            "status": ctx.status, "elapsed": ctx.elapsed_time,
            "executor_type": ctx.executor_type, "n_jobs": ctx.n_jobs,
            "first_estimated_speedup": ctx.first_estimated_speedup,
            "final_estimated_speedup": ctx.estimated_speedup,
            "actual_speedup": ctx.actual_speedup,
            "parallel_efficiency": ctx.parallel_efficiency,
            "worker_count": ctx.worker_count,
        }

    def summary(self) -> dict[str, Any]:
        """Everything recorded, JSON-ready."""
        kinds = [self.decision.get("executor_type")]
        kinds += [r["executor_type"] for r in self.revisions]
        return {"decision": self.decision, "revisions": self.revisions,
                "chunks": self.chunks, "outcome": self.outcome,
                "executor_types": kinds, "chose_threads": "thread" in kinds}


def time_amorsize(func: Callable[[Any], Any], data: Sequence[Any]) -> dict[str, Any]:
    """amorsize.execute() end to end: first call in this fresh process (defaults), then a
    repeat with keep_workers=True after an unmeasured call that kept its workers. The
    first call's events are recorded (a few callbacks: microseconds in all)."""
    import amorsize
    from amorsize import execute  # imported before timing, like joblib and mpire

    out: dict[str, Any] = {}
    for label, keep in (("first", False), ("warm-up", True), ("repeat", True)):
        recorder = RunRecorder() if label == "first" else None
        hooks = recorder.manager if recorder is not None else None
        t0 = time.perf_counter()
        results, opt = execute(func, data, hooks, return_optimization_result=True,
                               keep_workers=keep)
        elapsed = time.perf_counter() - t0
        del results  # before the next call, as in the other methods' fresh processes
        if label == "warm-up":
            continue
        out[label] = {
            "seconds": elapsed,
            "executor_type": opt.executor_type,
            "n_jobs": opt.n_jobs,
            "chunksize": opt.chunksize,
            "estimated_speedup": opt.estimated_speedup,
            "final_estimated_speedup": opt.final_estimated_speedup,
            "actual_speedup": opt.actual_speedup,
            "revisions": len(opt.revisions),
            "optimization_seconds": opt.optimization_seconds,
            "sampled_compute_seconds": opt.figures.sampled_compute_seconds or 0.0,
        }
        if recorder is not None:
            out[label]["events"] = recorder.summary()
            # What the parent keeps if a later call never returns (it reads the last
            # line it got before killing this process).
            print(json.dumps({"first": out[label]}), flush=True)
    amorsize.shutdown_workers()
    return out


def decide_under_load(func: Callable[[Any], Any], data: Sequence[Any]) -> dict[str, Any]:
    """One automatic execute() (the run's threads check): which executors it chose."""
    from amorsize import execute

    recorder = RunRecorder()
    t0 = time.perf_counter()
    execute(func, data, recorder.manager)
    return {"seconds": time.perf_counter() - t0, **recorder.summary()}


def run_config(
    func: Callable[[Any], Any], data: Sequence[Any], config: Config, cutoff: float
) -> Optional[float]:
    """Wall time of one grid configuration (pool start and stop included), or None
    when it ran past `cutoff` seconds and was stopped."""
    kind, n_jobs, chunksize = config
    if kind == "serial":
        return time_serial(func, data)
    t0 = time.perf_counter()
    pool: Pool = multiprocessing.Pool(n_jobs) if kind == "process" else ThreadPool(n_jobs)
    pending = pool.map_async(func, data, chunksize)
    pending.wait(max(0.0, cutoff - (time.perf_counter() - t0)))
    if not pending.ready():
        _abandon(pool)
        return None
    results = pending.get()
    pool.terminate()
    pool.join()
    elapsed = time.perf_counter() - t0
    del results
    return elapsed


def _abandon(pool: Pool) -> None:
    """Stop a pool that ran past its cutoff.

    Pool.terminate() can deadlock when a worker is killed while it holds the result
    pipe's lock (large results), so worker processes are killed and the pool is left
    to the garbage collector; the child process ends with os._exit. A thread pool
    cannot be killed: its running tasks are waited for.
    """
    if isinstance(pool, ThreadPool):
        pool.terminate()
        pool.join()
        return
    from multiprocessing.pool import TERMINATE

    internals: Any = pool
    internals._state = TERMINATE  # no new workers to replace the killed ones
    internals._worker_handler._state = TERMINATE
    internals._task_handler._state = TERMINATE
    internals._change_notifier.put(None)
    for process in list(internals._pool):
        process.kill()
    for process in list(internals._pool):
        process.join(timeout=5)
    internals._terminate.cancel()


def chunk_sizes(items: int, n_jobs: int) -> list[int]:
    """Powers of 4 from 1 to items/n_jobs, and the even split; largest first."""
    even = max(1, math.ceil(items / n_jobs))
    sizes = {even}
    size = 1
    while size < even:
        sizes.add(size)
        size *= 4
    return sorted(sizes, reverse=True)


def grid_search(
    func: Callable[[Any], Any], data: Sequence[Any], n_values: list[int], slack: float
) -> list[tuple[Config, float]]:
    """Coarse single-shot search; each row (kind, n_jobs) walks chunk sizes down and
    stops after two in a row that are cut off or worse than the row's best."""
    serial = time_serial(func, data)
    found: list[tuple[Config, float]] = [(("serial", 1, 0), serial)]
    best = serial
    for kind in ("process", "thread"):
        for n_jobs in n_values:
            row_best = math.inf
            misses = 0
            for chunksize in chunk_sizes(len(data), n_jobs):
                elapsed = run_config(func, data, (kind, n_jobs, chunksize), best * slack + 0.05)
                if elapsed is not None:
                    found.append(((kind, n_jobs, chunksize), elapsed))
                    best = min(best, elapsed)
                if elapsed is None or elapsed > row_best * 1.05:
                    misses += 1
                    if misses >= 2:
                        break
                else:
                    misses = 0
                if elapsed is not None:
                    row_best = min(row_best, elapsed)
    return sorted(found, key=lambda pair: pair[1])


def memory_run(items: int) -> dict[str, Any]:
    """execute_iter over a generator of cheap items, results dropped: peak RSS."""
    import amorsize

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    count = 0
    for _ in amorsize.execute_iter(double, (i for i in range(items))):
        count += 1
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"items": count, "seconds": elapsed, "peak_rss_mb": peak / 1024,
            "rss_before_mb": before / 1024}


def main(argv: list[str]) -> None:
    """Run the measurement named by the JSON spec in argv[1]; print one JSON line."""
    spec = json.loads(argv[1])
    method = spec["method"]
    if method == "memory":
        print(json.dumps(memory_run(spec["items"])))
        return
    workload = WORKLOADS[spec["workload"]]
    func, data = workload.func, workload.data(spec.get("quick", False))
    out: dict[str, Any]
    if method == "serial":
        out = {"seconds": time_serial(func, data)}
    elif method == "pool":
        out = {"seconds": time_pool(func, data)}
    elif method == "joblib":
        out = {"seconds": time_joblib(func, data)}
    elif method == "mpire":
        out = {"seconds": time_mpire(func, data)}
    elif method == "amorsize":
        out = time_amorsize(func, data)
    elif method == "decide":
        out = decide_under_load(func, data)
    elif method == "configs":
        times = [run_config(func, data, tuple(c), spec["cutoff"]) for c in spec["configs"]]
        out = {"times": times}
    elif method == "grid":
        found = grid_search(func, data, spec["n_values"], spec.get("slack", 1.3))
        out = {"found": found}
    else:
        raise SystemExit(f"unknown method {method!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
    sys.stdout.flush()
    for leftover in psutil.Process().children(recursive=True):  # workers of abandoned pools
        with contextlib.suppress(psutil.NoSuchProcess):  # ended since the listing
            leftover.kill()
    os._exit(0)  # abandoned pools (see _abandon) must not be joined at exit
