"""The cost model: predicted wall time of serial, thread and process plans. Pure.

No I/O and no clock: every figure comes in as an argument (what the items cost, as
the workers or the dry run measured it; what the machine costs), so the model is
tested with synthetic figures. Tasks are sized at run time (see `policy`); here a plan
is an executor and a worker count, with the task size the run starts from.

One definition of the estimated speedup is used everywhere (`speedup`): the whole
job run serially, against the whole execute() as planned, the time already spent
deciding included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

EXECUTOR_TYPES = ("serial", "thread", "process")

# CPU time / item time at or below which a function counts as waiting (I/O-bound).
IO_BOUND_CPU_SHARE = 0.5
MAX_THREADS = 64
THREAD_COUNTS = (2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, MAX_THREADS)
# Tasks of one worker end apart by about this share of a task's time even when equal
# (the machine's own variation; the items' measured spread is used when larger).
TASK_TIME_SPREAD = 0.05
# The shrinking tasks at the end of a run (guided sizing) add about this many tasks
# per worker.
TAIL_TASKS_PER_WORKER = 3
# A task is never planned shorter than this many times its own overhead.
MIN_TASK_OVERHEAD_RATIO = 20
# Memory a fresh worker process needs before it holds any data (fork, copy-on-write).
WORKER_BASE_MEMORY = 30 * 1024 * 1024


@dataclass(frozen=True)
class Workload:
    """What the items left to plan cost, per item.

    `item_seconds` is compute time as one uncontended worker would see it, of which
    `cpu_share` computes (the rest waits). `parent_ipc_seconds` is what the calling
    process spends per item to send it and take its result back (pickling),
    `worker_ipc_seconds` the same in the worker, `transfer_bytes` what crosses the pipe.
    """

    items: int
    item_seconds: float
    cpu_share: float = 1.0
    item_cv: float = 0.0
    parent_ipc_seconds: float = 0.0
    worker_ipc_seconds: float = 0.0
    transfer_bytes: float = 0.0
    peak_memory: int = 0

    @property
    def waits(self) -> bool:
        """Whether the function mostly waits rather than computes."""
        return self.cpu_share <= IO_BOUND_CPU_SHARE


@dataclass(frozen=True)
class MachineCosts:
    """What parallelism costs on this machine (measured, cached, or assumed).

    `gil`: threads run Python code one at a time (False on a free-threaded build).
    """

    cores: int
    available_memory: int
    process_start: float
    process_task: float
    ipc_seconds_per_byte: float
    thread_start: float = 0.0002
    thread_task: float = 0.00005
    gil: bool = True


@dataclass(frozen=True)
class Plan:
    """One candidate: executor, workers, the task size to start from, predicted time."""

    executor_type: str
    n_jobs: int
    chunksize: int
    seconds: float


def speedup(job_serial_seconds: float, spent_seconds: float, plan_seconds: float) -> float:
    """The estimated speedup: the whole job serially / (time spent so far + the plan)."""
    total = spent_seconds + plan_seconds
    if total <= 0:
        return 1.0
    return job_serial_seconds / total


def task_overhead(executor_type: str, machine: MachineCosts) -> float:
    """Seconds one task costs beyond its items."""
    if executor_type == "process":
        return machine.process_task
    if executor_type == "thread":
        return machine.thread_task
    return 0.0


def chunk_for(w: Workload, executor_type: str, n_jobs: int, target_chunk_duration: float,
              machine: MachineCosts) -> int:
    """The task size a run starts from: about `target_chunk_duration` of work, at most
    an even split over the workers, at least `MIN_TASK_OVERHEAD_RATIO` times the
    task's own overhead."""
    per_item = max(w.item_seconds + w.worker_ipc_seconds, 1e-9)
    size = max(1, int(target_chunk_duration / per_item))
    overhead = task_overhead(executor_type, machine)
    smallest = max(1, math.ceil(MIN_TASK_OVERHEAD_RATIO * overhead / per_item))
    even = max(1, math.ceil(w.items / max(1, n_jobs)))
    return max(1, min(max(size, smallest), even))


def _tasks(w: Workload, chunk: int, n_jobs: int) -> int:
    tasks = math.ceil(w.items / chunk)
    if tasks > n_jobs:
        tasks += TAIL_TASKS_PER_WORKER * n_jobs
    return tasks


def _tail(w: Workload, chunk: int, n_jobs: int, per_item: float) -> float:
    """How long the last worker runs on after the others: tasks shrink near the end,
    so about the last (smallest) task, plus the spread of one task."""
    if n_jobs <= 1:
        return 0.0
    last = min(chunk, max(1, math.ceil(w.items / (4 * n_jobs))))
    spread = max(TASK_TIME_SPREAD, w.item_cv / math.sqrt(last))
    return per_item * last * (0.5 + spread)


def predict_serial(w: Workload) -> float:
    """Predicted wall time in the calling process: the function's own time."""
    return w.items * w.item_seconds


def predict_process(w: Workload, n_jobs: int, chunk: int, machine: MachineCosts) -> float:
    """Predicted wall time on a process pool of `n_jobs`, tasks of about `chunk` items.

    Start: one worker's start, then about half of it for each further one (started in
    turn, they initialise side by side). The calling process pickles every item and
    result and pays half of each task's overhead; the workers compute. A saturated
    machine shares its cores: the run takes at least all CPU work / cores.
    """
    busy = max(1, min(n_jobs, math.ceil(w.items / chunk)))
    tasks = _tasks(w, chunk, busy)
    startup = machine.process_start * (1 + busy) / 2
    parent_item = w.parent_ipc_seconds + w.transfer_bytes * machine.ipc_seconds_per_byte
    per_item = w.item_seconds + w.worker_ipc_seconds
    parent = w.items * parent_item + tasks * machine.process_task / 2
    per_worker = (w.items * per_item + tasks * machine.process_task) / busy
    computing = w.items * w.item_seconds * (w.cpu_share if w.waits else 1.0)
    all_cpu = (computing + w.items * (parent_item + w.worker_ipc_seconds)
               + tasks * machine.process_task) / machine.cores
    return startup + max(per_worker, parent, all_cpu) + _tail(w, chunk, busy, per_item)


def predict_thread(w: Workload, n_jobs: int, chunk: int, machine: MachineCosts) -> float:
    """Predicted wall time on a thread pool. With the GIL the computing share runs
    one thread at a time; without it, threads compute side by side up to the cores."""
    busy = max(1, min(n_jobs, math.ceil(w.items / chunk)))
    tasks = _tasks(w, chunk, busy)
    startup = machine.thread_start * busy
    overlap = (w.items * w.item_seconds + tasks * machine.thread_task) / busy
    computing = w.items * w.item_seconds * w.cpu_share
    lanes = 1 if machine.gil else min(busy, machine.cores)
    cpu_bound = (computing + tasks * machine.thread_task) / lanes
    return startup + max(overlap, cpu_bound) + _tail(w, chunk, busy, w.item_seconds)


def memory_cap(w: Workload, chunk: int, available: int) -> int:
    """Most worker processes the available memory allows."""
    per_worker = WORKER_BASE_MEMORY + w.peak_memory * min(chunk, 4)
    return max(1, int(0.8 * available // per_worker))


def process_counts(w: Workload, machine: MachineCosts) -> list[int]:
    """Process counts worth predicting: 2 to the cores (to 4x the cores for a function
    that waits), never more than the items."""
    upper = machine.cores * (4 if w.waits else 1)
    return list(range(2, max(2, min(upper, w.items)) + 1))


def thread_counts(w: Workload) -> list[int]:
    """Thread counts worth predicting: 2 to 8, then steps of about 1.5x to the cap."""
    return [n for n in THREAD_COUNTS if n <= min(MAX_THREADS, max(2, w.items))]


def candidates(w: Workload, machine: MachineCosts, allowed: Sequence[str],
               n_jobs: Optional[int], target_chunk_duration: float) -> list[Plan]:
    """Every plan worth predicting among `allowed`, with its predicted time."""
    plans: list[Plan] = []
    if "serial" in allowed:
        plans.append(Plan("serial", 1, max(1, w.items), predict_serial(w)))
    if "process" in allowed:
        for n in [n_jobs] if n_jobs else process_counts(w, machine):
            chunk = chunk_for(w, "process", n, target_chunk_duration, machine)
            if n_jobs is None and memory_cap(w, chunk, machine.available_memory) < n:
                continue
            plans.append(Plan("process", n, chunk, predict_process(w, n, chunk, machine)))
    if "thread" in allowed:
        counts = thread_counts(w)
        if not machine.gil and not w.waits:  # computing on as many threads as cores:
            counts = [n for n in counts if n <= max(2, machine.cores)]  # more are no faster
        for n in [n_jobs] if n_jobs else counts:
            chunk = chunk_for(w, "thread", n, target_chunk_duration, machine)
            plans.append(Plan("thread", n, chunk, predict_thread(w, n, chunk, machine)))
    return plans


def pool_pays_from(w: Workload, machine: MachineCosts, target_chunk_duration: float,
                   min_speedup: float, ceiling: float = 1.0) -> float:
    """The item cost (seconds) from which `best_plan` would run `w`'s items on a pool
    rather than serially, all else as measured; `ceiling` if not even at that cost.
    Serial work is only worth stopping to review once its items cost this much."""
    def pays(item_seconds: float) -> bool:
        candidate = replace(w, item_seconds=item_seconds)
        return best_plan(candidate, machine, EXECUTOR_TYPES, None, target_chunk_duration,
                         min_speedup).executor_type != "serial"

    low, high = max(w.item_seconds, 1e-9), ceiling
    if pays(low):
        return low
    if not pays(high):
        return high
    while high > low * 1.25:  # to 25 %, on a log scale: a threshold, not a forecast
        middle = math.sqrt(low * high)
        low, high = (low, middle) if pays(middle) else (middle, high)
    return high


def best_plan(w: Workload, machine: MachineCosts, allowed: Sequence[str],
              n_jobs: Optional[int] = None, target_chunk_duration: float = 0.2,
              min_speedup: float = 1.0, spent_seconds: float = 0.0) -> Plan:
    """The fastest plan among `allowed`; a parallel one only if the whole run with it
    (`spent_seconds` already spent, included) beats serial by `min_speedup`, when
    serial is allowed. Ties go to fewer workers."""
    plans = candidates(w, machine, allowed, n_jobs, target_chunk_duration)
    if not plans:
        return Plan("serial", 1, max(1, w.items), predict_serial(w))
    best = min(plans, key=lambda p: (p.seconds, p.n_jobs))
    serial = next((p for p in plans if p.executor_type == "serial"), None)
    if serial is not None and best is not serial and (
        (spent_seconds + best.seconds) * min_speedup > spent_seconds + serial.seconds
    ):
        return serial
    return best
