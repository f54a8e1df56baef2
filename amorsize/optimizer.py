"""Decide how to run a job: serial, threads or processes, n_jobs and chunksize.

The decision comes from a cost model fed with what the dry run measured (compute per
item and its spread, CPU share, pickled sizes and times, peak memory) and what this
machine costs (worker start, task round-trip, bytes through the pipe, usable cores,
available memory). Every candidate configuration gets a predicted wall time; the
fastest wins, and parallelism is refused unless it beats serial by `min_speedup`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from amorsize import system
from amorsize.sampling import EnoughSampled, ItemMeasurement, Sample, take_sample

EXECUTOR_TYPES = ("serial", "thread", "process")

# Assumed job size when the input has no len() and no total_items hint was given.
ASSUMED_UNKNOWN_TOTAL = 10_000
# Below this predicted serial time a pool can never pay for itself.
MIN_PARALLEL_SECONDS = 0.02
# CPU time / wall time below which the function is treated as I/O-bound.
IO_BOUND_CPU_RATIO = 0.5
MAX_THREADS = 64
# Work per in-process (serial) chunk: progress events about once a second.
SERIAL_CHUNK_SECONDS = 1.0
# Used for the pipe's cost per byte where it was not measured: above the 1-3 ns seen
# on the benchmark machine. It is measured (3 ms) when the data moved at this bound
# would cost IPC_MATTERS_SHARE of the job or more.
IPC_SECONDS_PER_BYTE_BOUND = 5e-9
IPC_MATTERS_SHARE = 0.01
# How far apart, as a share of one chunk's time, workers given equal chunks still end
# (the machine's own variation; the items' sampled spread is used when larger). On the
# 2-core benchmark machine, equal chunks of 0.05 to 0.2 s took a few % apart when quiet,
# far more when other tenants were busy (2-3x at times); 0.05 is a compromise.
CHUNK_TIME_SPREAD = 0.05
# CPU time one task costs, in idle task round-trips measured on this machine: fitted
# on 2 cores (fork, Python 3.11), where 16 vs 375 equal tasks of the same 0.4 s of
# work differed by 0.22 ms of wall time per task with a 0.3 ms round-trip.
TASK_CPU_ROUNDTRIPS = 1.5
# Memory a fresh worker process needs before it holds any data (fork, copy-on-write).
WORKER_BASE_MEMORY = 30 * 1024 * 1024


@dataclass
class OptimizationResult:
    """How execute() will run the job, and the measured figures behind the decision.

    `predicted_seconds` is the plan's predicted wall time for the items left after the
    dry run (its results are kept); `serial_seconds_estimate` is the whole job run
    serially; `estimated_speedup` compares the two end to end, deciding included.
    """

    n_jobs: int
    chunksize: int
    executor_type: str
    estimated_speedup: float
    reason: str
    warnings: list[str] = field(default_factory=list)
    data: Optional[Iterable[Any]] = None
    total_items: Optional[int] = None
    predicted_seconds: Optional[float] = None
    serial_seconds_estimate: Optional[float] = None
    figures: dict[str, Any] = field(default_factory=dict)
    optimization_seconds: float = 0.0
    use_cloudpickle: bool = False

    def explain(self) -> str:
        """Return the decision and the measured figures behind it, one per line."""
        lines = [
            f"decision: {self.executor_type}, n_jobs={self.n_jobs}, chunksize={self.chunksize}",
            f"reason: {self.reason}",
            f"estimated speedup: {self.estimated_speedup:.2f}x",
        ]
        if self.serial_seconds_estimate is not None:
            lines.append(f"serial time estimate: {self.serial_seconds_estimate:.4f} s")
        if self.predicted_seconds is not None:
            lines.append(f"predicted time after deciding: {self.predicted_seconds:.4f} s")
        lines.append(f"optimization time: {self.optimization_seconds:.4f} s")
        for key, value in self.figures.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(f"{key}: {shown}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


@dataclass(frozen=True)
class Workload:
    """The per-item figures the cost model works from."""

    items: int
    item_seconds: float
    item_cv: float
    cpu_ratio: float
    pickle_seconds: float  # parent-side: input dumps + result loads (+ worker dumps)
    transfer_bytes: float  # input + result bytes per item
    peak_memory: int


@dataclass(frozen=True)
class Plan:
    """One candidate configuration and its predicted wall time."""

    executor_type: str
    n_jobs: int
    chunksize: int
    seconds: float


def validate_common(
    func: Any,
    data: Any,
    sample_size: Any,
    target_chunk_duration: Any,
    n_jobs: Any,
    chunksize: Any,
    executor_type: Any = None,
    total_items: Any = None,
    min_speedup: Any = 1.1,
) -> None:
    """Raise TypeError/ValueError naming the parameter for bad arguments."""
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an iterable of items (list, range, generator...), "
            f"got {type(data).__name__}"
        )
    _check_int("sample_size", sample_size)
    if not isinstance(target_chunk_duration, (int, float)) or isinstance(
        target_chunk_duration, bool
    ):
        raise TypeError(
            "target_chunk_duration must be a number of seconds, "
            f"got {type(target_chunk_duration).__name__}"
        )
    if not target_chunk_duration > 0 or math.isinf(target_chunk_duration):
        raise ValueError(
            f"target_chunk_duration must be a positive number of seconds, "
            f"got {target_chunk_duration!r}"
        )
    if n_jobs is not None:
        _check_int("n_jobs", n_jobs)
    if chunksize is not None:
        _check_int("chunksize", chunksize)
    if executor_type is not None and executor_type not in EXECUTOR_TYPES:
        raise ValueError(
            f"executor_type must be one of {', '.join(EXECUTOR_TYPES)} or None, "
            f"got {executor_type!r}"
        )
    if total_items is not None and (
        not isinstance(total_items, int) or isinstance(total_items, bool) or total_items < 0
    ):
        raise ValueError(f"total_items must be an int >= 0 (a hint), got {total_items!r}")
    if (
        not isinstance(min_speedup, (int, float))
        or isinstance(min_speedup, bool)
        or not 0 < min_speedup < math.inf
    ):
        raise ValueError(f"min_speedup must be a positive finite number, got {min_speedup!r}")


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _workload(sample: Sample, total: int) -> Workload:
    return Workload(
        items=total,
        item_seconds=sample.mean_item_seconds,
        item_cv=sample.item_seconds_cv,
        cpu_ratio=sample.cpu_ratio,
        pickle_seconds=sample.mean_pickle_seconds,
        transfer_bytes=sample.mean_input_bytes + sample.mean_result_bytes,
        peak_memory=sample.peak_memory_bytes,
    )


def predict_serial(w: Workload) -> float:
    """Predicted wall time in-process: the function's own time."""
    return w.items * w.item_seconds


def _tail(w: Workload, busy_workers: int, chunksize: int) -> float:
    """Expected time the last worker runs on after the others have stopped.

    Two parts. Whole tasks do not divide evenly among the workers: taken in turn, the
    tasks leave each worker a load that differs from the mean by up to one chunk (the
    last, partial chunk included). And chunks never take exactly as long as predicted
    (the items' own spread, and the machine: other processes, frequency, caches), so
    workers end apart by a share of one chunk's time. Smaller chunks shrink both, at a
    per-task cost.
    """
    if busy_workers <= 1:
        return 0.0
    full, partial = divmod(w.items, chunksize)
    rounds, extra = divmod(full, busy_workers)
    # Workers [0, extra) get one more full chunk; the partial one goes to the next.
    most = max((rounds + (extra > 0)) * chunksize, rounds * chunksize + partial)
    uneven = (most - w.items / busy_workers) * w.item_seconds
    spread = max(CHUNK_TIME_SPREAD, w.item_cv / math.sqrt(chunksize))
    return max(0.0, uneven) + spread * min(chunksize, w.items) * w.item_seconds


def predict_process(
    w: Workload, n_jobs: int, chunksize: int, cores: int, costs: system.ProcessCosts
) -> float:
    """Predicted wall time on a process pool of `n_jobs` with `chunksize` items per task.

    Start: one worker's measured start, then about half of it for every further one
    (the parent forks them one by one; they initialise side by side); stop: a quarter
    of it per worker. Each task costs `TASK_CPU_ROUNDTRIPS` measured idle round-trips
    of CPU time (parent and worker side: pickling the chunk and its report, the pipe,
    the bookkeeping), half of it in the parent. On a saturated machine every CPU
    second is shared by `cores`, so the run takes at least all CPU work / cores.
    """
    tasks = math.ceil(w.items / chunksize)
    startup = costs.worker_start * (1 + n_jobs) / 2 + 0.25 * costs.worker_start * n_jobs
    per_byte = costs.ipc_seconds_per_byte
    per_item_ipc = w.pickle_seconds + w.transfer_bytes * (
        per_byte if per_byte is not None else IPC_SECONDS_PER_BYTE_BOUND)
    task_cpu = TASK_CPU_ROUNDTRIPS * costs.task_roundtrip
    parent = w.items * per_item_ipc + tasks * task_cpu / 2
    busy_workers = min(n_jobs, tasks)
    io_bound = w.cpu_ratio <= IO_BOUND_CPU_RATIO
    work = w.items * w.item_seconds * (w.cpu_ratio if io_bound else 1.0)
    per_worker = (w.items * w.item_seconds + tasks * task_cpu) / busy_workers
    all_cpu = (work + w.items * per_item_ipc + tasks * task_cpu) / cores
    return startup + max(per_worker, parent, all_cpu) + _tail(w, busy_workers, chunksize)


def predict_thread(
    w: Workload, n_jobs: int, chunksize: int, costs: system.ThreadCosts
) -> float:
    """Predicted wall time on a thread pool: the GIL serialises the CPU share."""
    tasks = math.ceil(w.items / chunksize)
    startup = costs.worker_start * n_jobs
    busy_workers = min(n_jobs, tasks)
    overlap = w.items * w.item_seconds / busy_workers
    gil = w.items * w.item_seconds * w.cpu_ratio + tasks * costs.task_roundtrip
    return startup + max(overlap, gil) + _tail(w, busy_workers, chunksize)


def chunksize_candidates(items: int, n_jobs: int, max_chunk: int) -> list[int]:
    """Chunk sizes worth predicting: powers of 4, even splits (1 to 64 tasks per
    worker), capped at `max_chunk`."""
    candidates = {1, max(1, math.ceil(items / n_jobs))}
    for per_worker in (2, 3, 4, 6, 8, 12, 16, 32, 64):
        candidates.add(max(1, math.ceil(items / (n_jobs * per_worker))))
    size = 4
    while size < items:
        candidates.add(size)
        size *= 4
    return sorted(c for c in candidates if c <= max(1, max_chunk))


def max_chunk_for(w: Workload, target_chunk_duration: float) -> int:
    """Largest chunk that keeps a task near `target_chunk_duration` seconds."""
    if w.item_seconds <= 0:
        return max(1, w.items)
    return max(1, int(target_chunk_duration / w.item_seconds))


def _serial_chunk(w: Workload, target_chunk_duration: float) -> int:
    """Items per in-process chunk: about `SERIAL_CHUNK_SECONDS` of work (or the target
    chunk duration if longer), all items at most.

    In process a chunk costs nothing to send; it only sets how often progress events
    fire, and every chunk after the first is copied into the result list (an incref
    per item, which is noticeable next to a 100 ns function), so chunks are long.
    """
    seconds = max(target_chunk_duration, SERIAL_CHUNK_SECONDS)
    return min(max(1, w.items), max_chunk_for(w, seconds))


def memory_cap(w: Workload, chunksize: int, available: int) -> int:
    """Most worker processes the available memory allows."""
    per_worker = WORKER_BASE_MEMORY + w.peak_memory * min(chunksize, 4)
    return max(1, int(0.8 * available // per_worker))


def _thread_counts(items: int) -> list[int]:
    """Thread counts worth predicting: 2 to 8, then steps of about 1.5x up to the cap."""
    counts = {2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, MAX_THREADS}
    return sorted(n for n in counts if n <= min(MAX_THREADS, items))


def best_plan(
    w: Workload,
    *,
    target_chunk_duration: float,
    cores: int,
    available_memory: int,
    process_costs: Optional[system.ProcessCosts],
    thread_costs: Optional[system.ThreadCosts],
    allowed: Sequence[str],
    n_jobs: Optional[int],
    chunksize: Optional[int],
) -> Plan:
    """Return the candidate configuration with the lowest predicted wall time."""
    max_chunk = max_chunk_for(w, target_chunk_duration)
    serial_chunk = chunksize or _serial_chunk(w, target_chunk_duration)
    plans = [Plan("serial", 1, serial_chunk, predict_serial(w))] if "serial" in allowed else []
    # One worker only makes sense when the caller fixed the kind of pool.
    fewest = 2 if "serial" in allowed else 1
    if "process" in allowed and process_costs is not None:
        upper = cores if w.cpu_ratio > IO_BOUND_CPU_RATIO else 4 * cores
        for n in [n_jobs] if n_jobs else range(fewest, max(fewest, min(upper, w.items)) + 1):
            for c in [chunksize] if chunksize else chunksize_candidates(w.items, n, max_chunk):
                if memory_cap(w, c, available_memory) < n:
                    continue
                plans.append(Plan("process", n, c, predict_process(w, n, c, cores, process_costs)))
    if "thread" in allowed and thread_costs is not None:
        threads = [1] * (fewest == 1) + _thread_counts(w.items)
        for n in [n_jobs] if n_jobs else threads:
            for c in [chunksize] if chunksize else chunksize_candidates(w.items, n, max_chunk):
                plans.append(Plan("thread", n, c, predict_thread(w, n, c, thread_costs)))
    if not plans:
        return Plan("serial", 1, serial_chunk, predict_serial(w))
    return min(plans, key=lambda p: (p.seconds, p.n_jobs, -p.chunksize))


def decide(
    sample: Sample,
    *,
    target_chunk_duration: float = 0.2,
    n_jobs: Optional[int] = None,
    chunksize: Optional[int] = None,
    executor_type: Optional[str] = None,
    total_items: Optional[int] = None,
    min_speedup: float = 1.1,
    process_cost_source: Optional[Callable[[bool], system.ProcessCosts]] = None,
) -> OptimizationResult:
    """Turn a sample into a decision. Fixed n_jobs/chunksize/executor_type are kept.

    `process_cost_source(ipc)` is called when the decision needs the process costs,
    `ipc` telling whether the cost per byte is needed too (default:
    `system.process_costs`, measured once per process).
    """
    warnings: list[str] = []
    total = total_items if total_items is not None else sample.total_items
    if total is None:
        assumed = ASSUMED_UNKNOWN_TOTAL
        warnings.append(
            f"the input has no len(); the decision assumes {assumed} items "
            "(pass total_items= for a better one)"
        )
    else:
        assumed = total
    # The sampled items are done: every plan is for the rest, which the run splits.
    w = _workload(sample, max(assumed - len(sample.results), 1))
    job_serial = max(assumed, 1) * w.item_seconds  # the whole job, serially
    cores = system.usable_cores()
    available = system.available_memory()
    figures: dict[str, Any] = {
        "sampled items": len(sample.measurements),
        "mean item time (s)": w.item_seconds,
        "item time spread (cv)": w.item_cv,
        "cpu time / wall time": w.cpu_ratio,
        "pickled input (bytes/item)": sample.mean_input_bytes,
        "pickled result (bytes/item)": sample.mean_result_bytes,
        "pickle+unpickle time (s/item)": w.pickle_seconds,
        "peak memory of one call (bytes)": sample.peak_memory_bytes,
        "sampled compute (s)": sample.compute_seconds,
        "usable cores": cores,
        "physical cores": system.physical_cores(),
        "available memory (bytes)": available,
        "start method": system.start_method(),
    }

    allowed = [executor_type] if executor_type else list(EXECUTOR_TYPES)
    if n_jobs is not None and n_jobs > 1 and "serial" in allowed and executor_type is None:
        allowed.remove("serial")
    if n_jobs == 1 and executor_type is None:
        allowed = ["serial"]
    use_cloudpickle = False
    if "process" in allowed:
        blocker = _process_blocker(sample)
        if blocker == "function":
            use_cloudpickle = True
            warnings.append(
                "the function cannot be pickled by reference (lambda, closure or local "
                "function); it is sent to worker processes with cloudpickle"
            )
        elif blocker is not None:
            if executor_type == "process":
                raise TypeError(
                    f"executor_type='process' needs picklable {blocker}; make them "
                    "picklable or use executor_type='thread'"
                )
            allowed.remove("process")
            warnings.append(
                f"the {blocker} cannot be pickled, so worker processes are not an option; "
                "threads or serial are considered instead"
            )

    serial_seconds = predict_serial(w)
    if sample.error is not None:
        plan = Plan("serial", 1, chunksize or 1, serial_seconds)
        reason = "The function raised on a sampled item, so the job stops there."
        return _result(plan, serial_seconds, reason, warnings, figures, total,
                       use_cloudpickle, job_serial)

    if executor_type is None and n_jobs is None and "serial" in allowed:
        quick = _obviously_serial(w, cores, min_speedup)
        if quick is not None:
            plan = Plan("serial", 1, chunksize or _serial_chunk(w, target_chunk_duration),
                        serial_seconds)
            return _result(plan, serial_seconds, quick, warnings, figures, total,
                           use_cloudpickle, job_serial)

    if "thread" in allowed and "serial" in allowed and executor_type is None and (
        w.cpu_ratio * min_speedup > 1
    ):
        # The GIL runs the computing share one thread at a time: threads can save at
        # most the waiting share, too little to reach min_speedup (and their costs
        # need not be measured).
        allowed.remove("thread")
    thread_costs = system.thread_costs() if "thread" in allowed else None
    if thread_costs is not None and "process" in allowed and executor_type is None and (
        n_jobs is None
    ) and _threads_win(w, target_chunk_duration, cores, available, thread_costs, chunksize):
        allowed.remove("process")  # and the process costs need not be measured
    process_costs = None
    if "process" in allowed:
        moved = w.items * w.transfer_bytes * IPC_SECONDS_PER_BYTE_BOUND
        needs_ipc = moved >= IPC_MATTERS_SHARE * serial_seconds
        if process_cost_source is not None:
            process_costs = process_cost_source(needs_ipc)
        else:
            process_costs = system.process_costs(ipc=needs_ipc)
    if process_costs is not None:
        figures["worker start (s)"] = process_costs.worker_start
        figures["task round-trip (s)"] = process_costs.task_roundtrip
        figures["ipc cost (s/byte)"] = (
            process_costs.ipc_seconds_per_byte if process_costs.ipc_seconds_per_byte is not None
            else f"not measured: the data moved is too small to matter (at most "
                 f"{IPC_SECONDS_PER_BYTE_BOUND:g} assumed)")
    if thread_costs is not None:
        figures["thread task round-trip (s)"] = thread_costs.task_roundtrip
    plan = best_plan(
        w,
        target_chunk_duration=target_chunk_duration,
        cores=cores,
        available_memory=available,
        process_costs=process_costs,
        thread_costs=thread_costs,
        allowed=allowed,
        n_jobs=n_jobs,
        chunksize=chunksize,
    )
    fixed = executor_type is not None or n_jobs is not None
    if plan.executor_type != "serial" and not fixed and "serial" in allowed:
        speedup = serial_seconds / plan.seconds if plan.seconds > 0 else 1.0
        if speedup < min_speedup:
            reason = (
                f"Parallel would not pay: the best option ({plan.executor_type}, "
                f"{plan.n_jobs} workers) is predicted at {speedup:.2f}x, below the "
                f"{min_speedup:.2f}x needed, so the job runs serially."
            )
            serial = Plan("serial", 1, chunksize or _serial_chunk(w, target_chunk_duration),
                          serial_seconds)
            return _result(serial, serial_seconds, reason, warnings, figures, total,
                           use_cloudpickle, job_serial)
    reason = _reason(plan, w, serial_seconds, fixed)
    return _result(plan, serial_seconds, reason, warnings, figures, total, use_cloudpickle,
                   job_serial)


def _threads_win(
    w: Workload,
    target_chunk_duration: float,
    cores: int,
    available: int,
    thread_costs: system.ThreadCosts,
    chunksize: Optional[int],
) -> bool:
    """For a waiting (I/O-bound) function: is the best thread plan already faster than
    any process pool could be, even with free workers and free IPC?"""
    if w.cpu_ratio > IO_BOUND_CPU_RATIO:
        return False
    threads = best_plan(
        w, target_chunk_duration=target_chunk_duration, cores=cores,
        available_memory=available, process_costs=None, thread_costs=thread_costs,
        allowed=["thread"], n_jobs=None, chunksize=chunksize,
    )
    process_bound = w.items * w.item_seconds / max(1, min(4 * cores, w.items))
    return threads.seconds <= process_bound


def _process_blocker(sample: Sample) -> Optional[str]:
    """What cannot be pickled by reference on the way to a worker process, if anything
    ("function" is handled by sending it with cloudpickle, a core dependency)."""
    if not sample.items_picklable:
        return "input items"
    if not sample.results_picklable:
        return "results"
    if not sample.function_picklable:
        return "function"
    return None


def _obviously_serial(w: Workload, cores: int, min_speedup: float) -> Optional[str]:
    """Return a reason when no pool could pay off, before measuring pool costs."""
    serial = predict_serial(w)
    if serial < MIN_PARALLEL_SECONDS:
        return (
            f"The whole job is predicted at {serial * 1000:.1f} ms serially, too short for "
            "any worker pool to pay for itself."
        )
    if w.cpu_ratio > IO_BOUND_CPU_RATIO:
        # Best case for processes: free workers, only the parent's pickling is serial.
        parent = w.items * w.pickle_seconds
        ideal = max(serial / cores, parent, (serial + parent) / cores)
        if ideal * min_speedup > serial:
            return (
                f"Each item takes {w.item_seconds * 1e6:.1f} us but moving it to a worker "
                f"costs {w.pickle_seconds * 1e6:.1f} us of pickling in the parent, so even "
                "free workers could not beat serial."
            )
    return None


# The figure naming the seconds of the optimization time spent starting the worker
# processes that the run then used (execute() only).
WORKER_START_KEPT = "worker start kept for the run (s)"
# A job predicted (from its first item) shorter than this serially starts no pool early.
EARLY_START_JOB_SECONDS = 0.1


def processes_look_likely(first: ItemMeasurement, total: Optional[int], cores: int,
                          min_speedup: float = 1.1,
                          per_byte: float = IPC_SECONDS_PER_BYTE_BOUND) -> bool:
    """From the first sampled item alone: is a process pool likely to be the decision?

    True for computing (not waiting) items whose job is long (at least
    `EARLY_START_JOB_SECONDS` serially) and whose pickling and bytes through the pipe
    (`per_byte` seconds each: measured, else a bound) leave room for a speedup.
    Worker processes can then be started while the rest of the sample runs.
    """
    if cores < 2 or first.wall_seconds <= 0 or first.input_bytes is None or (
        first.result_bytes is None
    ):
        return False
    if first.cpu_seconds / first.wall_seconds <= IO_BOUND_CPU_RATIO:
        return False  # waiting items: threads
    items = total if total is not None else ASSUMED_UNKNOWN_TOTAL
    if items * first.wall_seconds < EARLY_START_JOB_SECONDS:
        return False
    parent = (first.input_pickle_seconds + first.result_pickle_seconds
              + first.result_unpickle_seconds
              + (first.input_bytes + first.result_bytes) * per_byte)
    ideal = max(first.wall_seconds / cores, parent)
    return ideal * min_speedup < first.wall_seconds


def _reason(plan: Plan, w: Workload, serial_seconds: float, fixed: bool) -> str:
    speedup = serial_seconds / plan.seconds if plan.seconds > 0 else 1.0
    if plan.executor_type == "serial":
        return "Serial is predicted fastest for this workload."
    kind = "threads" if plan.executor_type == "thread" else "worker processes"
    why = ""
    if plan.executor_type == "thread":
        waiting = 100 * (1 - w.cpu_ratio)
        why = f" (the function spends {waiting:.0f}% of its time waiting, not computing)"
    source = "the settings you fixed" if fixed else "the fastest predicted option"
    return (
        f"{plan.n_jobs} {kind} with {plan.chunksize} items per task is {source}{why}: "
        f"{plan.seconds:.3f} s predicted against {serial_seconds:.3f} s serially ({speedup:.2f}x)."
    )


def _result(
    plan: Plan,
    serial_seconds: float,
    reason: str,
    warnings: list[str],
    figures: dict[str, Any],
    total: Optional[int],
    use_cloudpickle: bool,
    job_serial: float,
) -> OptimizationResult:
    """`serial_seconds` and the plan cover the items left after the sample;
    `job_serial` is the whole job run serially."""
    speedup = serial_seconds / plan.seconds if plan.seconds > 0 else 1.0
    return OptimizationResult(
        n_jobs=plan.n_jobs,
        chunksize=plan.chunksize,
        executor_type=plan.executor_type,
        estimated_speedup=speedup if plan.executor_type != "serial" else 1.0,
        reason=reason,
        warnings=warnings,
        total_items=total,
        predicted_seconds=plan.seconds,
        serial_seconds_estimate=job_serial,
        figures=figures,
        use_cloudpickle=use_cloudpickle and plan.executor_type == "process",
    )


def optimize_with_sample(
    func: Callable[[Any], Any],
    data: Iterable[Any],
    *,
    sample_size: int = 5,
    target_chunk_duration: float = 0.2,
    n_jobs: Optional[int] = None,
    chunksize: Optional[int] = None,
    executor_type: Optional[str] = None,
    total_items: Optional[int] = None,
    min_speedup: float = 1.1,
    process_cost_source: Optional[Callable[[bool], system.ProcessCosts]] = None,
    enough: Optional[EnoughSampled] = None,
) -> tuple[OptimizationResult, Sample]:
    """Sample `func` on `data` and decide; return the decision and the sample.

    `enough` may end the sample early (see `take_sample`)."""
    started = time.perf_counter()
    sample = take_sample(func, data, sample_size, enough)
    result = decide(
        sample,
        target_chunk_duration=target_chunk_duration,
        n_jobs=n_jobs,
        chunksize=chunksize,
        executor_type=executor_type,
        total_items=total_items,
        min_speedup=min_speedup,
        process_cost_source=process_cost_source,
    )
    result.optimization_seconds = time.perf_counter() - started
    _end_to_end_speedup(result)
    return result, sample


def _end_to_end_speedup(result: OptimizationResult) -> None:
    """Make the estimated speedup an end-to-end one, as the run's actual speedup is
    measured: the time already spent deciding counts, the sampled items are done."""
    plan_seconds = result.predicted_seconds
    serial_seconds = result.serial_seconds_estimate
    if result.executor_type in ("serial", "external") or not plan_seconds or not serial_seconds:
        return
    predicted = result.optimization_seconds + plan_seconds  # the plan covers the rest
    if predicted > 0:
        result.estimated_speedup = serial_seconds / predicted


def optimize(
    func: Callable[[Any], Any],
    data: Iterable[Any],
    *,
    sample_size: int = 5,
    target_chunk_duration: float = 0.2,
    n_jobs: Optional[int] = None,
    chunksize: Optional[int] = None,
    executor_type: Optional[str] = None,
    total_items: Optional[int] = None,
    min_speedup: float = 1.1,
) -> OptimizationResult:
    """Dry-run `func` on a few items of `data` and decide how to run the whole job.

    Respects CPU affinity, the cgroup CPU quota and memory limit. The returned
    `data` attribute holds every item (sampled ones chained back for one-shot
    iterables); pass it on instead of the original iterator. Raises the function's
    own exception if it fails on a sampled item.
    """
    validate_common(
        func, data, sample_size, target_chunk_duration, n_jobs, chunksize, executor_type,
        total_items, min_speedup,
    )
    result, sample = optimize_with_sample(
        func,
        data,
        sample_size=sample_size,
        target_chunk_duration=target_chunk_duration,
        n_jobs=n_jobs,
        chunksize=chunksize,
        executor_type=executor_type,
        total_items=total_items,
        min_speedup=min_speedup,
    )
    if sample.error is not None:
        raise sample.error
    reiterable = isinstance(data, Sequence) or (
        sample.total_items is not None and iter(data) is not data
    )
    result.data = data if reiterable else sample.remaining_data()
    return result
