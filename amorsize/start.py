"""How a run starts: the plan before any task, with or without a dry run here.

In automatic mode (nothing fixed the executor) the first items run in the calling
process and the cost model decides (`optimizer.decide`). With an executor fixed
(`executor_type=`, `executor=`), `n_jobs=1`, or workers kept warm for the function,
nothing is measured here: the plan is what was fixed, and the pool's first tasks are
small probes (see `policy.TaskSizer`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

from amorsize import costmodel, pools, warm_pool
from amorsize.arguments import RunOptions
from amorsize.lanes import task_function
from amorsize.optimizer import OptimizationResult, decide
from amorsize.sampling import Sample, take_sample
from amorsize.worker import FunctionPayload


def decide_start(func: Callable[[Any], Any], data: Iterable[Any], options: RunOptions,
                 total: Optional[int], machine: costmodel.MachineCosts, method: str,
                 started: float) -> tuple[OptimizationResult, Optional[Sample]]:
    """The first plan, and the dry run behind it (None when nothing ran here).

    `optimization_seconds` is the time spent deciding, the dry run's own compute left
    out (those results are kept)."""
    o = options
    fixed = fixed_plan(func, o, total, machine, method)
    if fixed is not None:
        fixed.optimization_seconds = time.perf_counter() - started
        return fixed, None
    sample = take_sample(func, data, o.sample_size)
    optimization = decide(
        sample, target_chunk_duration=o.target_chunk_duration, n_jobs=o.n_jobs,
        total_items=total, min_speedup=o.min_speedup, machine=machine,
        spent_seconds=time.perf_counter() - started, start_method=method)
    if o.chunksize is not None:
        optimization.chunksize = o.chunksize
    optimization.optimization_seconds = time.perf_counter() - started - sample.compute_seconds
    return optimization, sample


def fixed_plan(func: Callable[[Any], Any], o: RunOptions, total: Optional[int],
               machine: costmodel.MachineCosts, method: str) -> Optional[OptimizationResult]:
    """The plan when nothing may run in the calling process (an executor fixed, or
    workers kept warm for this function), or serial was fixed; None: decide."""
    kind, workers, reason = None, o.n_jobs, ""
    warnings: list[str] = []
    if o.executor is not None:
        kind = pools.executor_kind(o.executor)
        workers = o.n_jobs or executor_workers(o.executor)
        if workers is None:
            workers = machine.cores
            warnings.append(f"could not ask the executor how many workers it has; "
                            f"assumed {workers} (pass n_jobs=)")
        reason = "The caller's executor runs every item"
    elif o.executor_type is not None:
        kind, reason = o.executor_type, f"executor_type={o.executor_type!r} was fixed"
    elif o.n_jobs == 1:
        kind, reason = "serial", "n_jobs=1 was fixed"
    elif o.keep_workers:
        warm = warm_pool.idle_workers(func, o.n_jobs, method)
        if warm is not None:
            kind, workers = "process", warm
            reason = "The workers kept warm for this function run every item"
    if kind is None:
        return None
    if workers is None:
        workers = (1 if kind == "serial" else machine.cores if kind == "process"
                   else min(costmodel.MAX_THREADS, machine.cores + 4))
    if total is not None:
        workers = max(1, min(workers, total))
    by_value = False
    if kind in ("process", "external"):
        by_value = isinstance(task_function(func, kind), FunctionPayload)
        if by_value:
            warnings.append("the function cannot be pickled by reference (lambda, closure "
                            "or local function); it is sent to the workers with "
                            "cloudpickle")
    return OptimizationResult(
        n_jobs=workers, chunksize=o.chunksize or 0, executor_type=kind,
        estimated_speedup=math.nan, total_items=total, warnings=warnings,
        use_cloudpickle=by_value,
        reason=f"{reason}; nothing runs in the calling process, and tasks are sized from "
               "what the workers measure." if kind != "serial" else
               f"{reason}: every item runs in the calling process.")


def executor_workers(executor: Any) -> Optional[int]:
    """How many workers a caller's executor has, where it can tell, else None.

    concurrent.futures pools have no public attribute for it (their `_max_workers` is
    read); a dask.distributed executor is asked through one task that reads the
    cluster's thread count where it runs (dask's executor has no public client).
    """
    count = getattr(executor, "_max_workers", None)
    if isinstance(count, int) and count > 0:
        return count
    if type(executor).__module__.startswith("distributed"):
        try:
            threads = executor.submit(_dask_cluster_threads).result(timeout=30)
        except Exception:
            return None
        return threads if isinstance(threads, int) and threads > 0 else None
    return None


def _dask_cluster_threads() -> int:
    """Run on a dask worker: the cluster's worker threads."""
    from distributed import get_client

    return max(1, sum(get_client().nthreads().values()))
