"""The run-time policy: what the workers' reports say about the items, the size of the
next task, whether the executor is right, and the revised speedup estimate. Pure.

Fed `ChunkReport`s and times as numbers (no clock, no I/O), so it is tested with
report sequences: item cost rising, falling or stepping along the input, noise, a
busy machine.

How tasks are sized, and why it differs from joblib's auto batching (which times
batches in the parent, from dispatch to completion, and only doubles or halves):
- the item cost comes from the workers' own compute time, by input position, so the
  estimate follows the items about to be sent (`ItemCosts.per_item`);
- a task is `target_chunk_duration` of that cost, grown at most 4x over the largest
  task measured so far while the estimate rests on few items;
- near the end tasks shrink to a share of what is left per worker (guided
  self-scheduling, as OpenMP's schedule(guided) and factoring do), so the workers
  finish together;
- each task carries a time budget: a worker that finds its items dearer than planned
  stops and returns what it did (see `worker.run_task`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional

from amorsize import costmodel
from amorsize.measure import could_run as runnable
from amorsize.measure import cpu_share
from amorsize.worker import SLICES_PER_BUDGET, ChunkReport

GROWTH = 4
FIRST_TASK_SHARE = 0.25  # with an estimate but no task measured yet: this share of the target
TAIL_SPLIT = 2  # guided sizing: at most what is left / (TAIL_SPLIT x workers)
BUDGET_FACTOR = 1.5  # a task stops after about this many times the target duration,
PLANNED_BUDGET_FACTOR = 2.0  # or this many times its own planned duration if shorter,
BUDGET_FLOOR_SECONDS = 0.02  # but never sooner than this
RECENT = 3  # tasks (by input position) the estimate at the frontier is taken from
SWITCH_GAIN = 1.3  # another executor must be predicted this much faster to move to it
GIL_SATURATED = 0.8  # thread CPU time / wall time at which the GIL is the bottleneck
MIN_EVIDENCE_TASKS = 2  # per worker, before the executor is questioned


@dataclass(frozen=True)
class _Entry:
    start: int
    done: int
    wall_per_item: float  # as the worker ran it (contention included): for sizing
    serial_per_item: float  # as one uncontended worker would: for the estimates


class ItemCosts:
    """What the items cost, from the reports, by input position."""

    def __init__(self, gil: bool = True) -> None:
        self.gil = gil
        self._recent: list[_Entry] = []  # the RECENT furthest along the input
        self.items = 0
        self.tasks = 0
        self.serial_seconds = 0.0
        self.busy_seconds = 0.0
        self.largest_task = 0
        self._cpu = 0.0  # uncontended runs: calling process, process workers
        self._could_run = 0.0
        self._thread_cpu = 0.0
        self._thread_could_run = 0.0
        self._parent_ipc = 0.0
        self._worker_ipc = 0.0
        self._ipc_items = 0
        self._bytes = 0.0
        self._byte_items = 0
        self._threads: deque[tuple[float, float, float]] = deque(maxlen=64)
        self.prior: Optional[costmodel.Workload] = None  # the dry run's figures

    def add(self, report: ChunkReport, kind: str) -> None:
        """Take in one finished task run by a `kind` worker (serial, thread, process,
        external; the calling process counts as serial)."""
        done = report.done
        if done <= 0:
            return
        could_run = runnable(report.cpu_seconds, report.duration, report.run_delay)
        if kind == "thread" and self.gil:
            self._thread_cpu += report.cpu_seconds
            self._thread_could_run += could_run
            self._threads.append((report.wall_start, report.wall_end, report.cpu_seconds))
            serial = could_run
            share = self.cpu_share()
            if share is not None and share > 0:
                serial = min(could_run, report.cpu_seconds / share)
        else:
            self._cpu += report.cpu_seconds
            self._could_run += could_run
            serial = could_run
        uncontended = serial
        if kind == "serial":
            # Serial work in the calling process is the serial run itself: as long as
            # it took, busy machine included (the achieved speedup of a serial run is
            # then about 1, not the machine's load).
            serial = report.duration
        self.items += done
        self.tasks += 1
        self.serial_seconds += serial
        self.busy_seconds += report.duration
        self.largest_task = max(self.largest_task, done)
        if kind in ("process", "external"):
            self._parent_ipc += report.parent_ipc_seconds
            self._worker_ipc += report.ipc_seconds
            self._ipc_items += done
            if report.result_bytes is not None:
                self._bytes += report.result_bytes
                self._byte_items += done
        entry = _Entry(report.start_index, done, report.duration / done, uncontended / done)
        recent = self._recent
        recent.append(entry)
        recent.sort(key=lambda e: e.start)
        del recent[:-RECENT]

    def per_item(self, serial: bool = False) -> Optional[float]:
        """Seconds per item at the frontier of the input: the larger of the furthest
        task's figure and the item-weighted mean of the RECENT furthest (a rising cost
        follows the latest; noise is smoothed). None before any report."""
        if not self._recent:
            if self.prior is not None:
                return self.prior.item_seconds
            return None
        values = [e.serial_per_item if serial else e.wall_per_item for e in self._recent]
        weights = [e.done for e in self._recent]
        mean = sum(v * w for v, w in zip(values, weights, strict=False)) / sum(weights)
        return max(values[-1], mean)

    def cpu_share(self) -> Optional[float]:
        """Computing share of the item time, from uncontended runs where there are
        any (threads under the GIL wait for it, which reads as waiting)."""
        if self._could_run > 0:
            return cpu_share(self._cpu, self._could_run, 0.0)
        if self.prior is not None:
            return self.prior.cpu_share
        if self._thread_could_run > 0:
            return cpu_share(self._thread_cpu, self._thread_could_run, 0.0)
        return None

    def gil_load(self) -> Optional[float]:
        """Thread CPU seconds per wall second over the recent thread tasks: near 1 when
        the GIL, not the threads, limits the run."""
        if len(self._threads) < 2:
            return None
        start = min(t[0] for t in self._threads)
        end = max(t[1] for t in self._threads)
        if end <= start:
            return None
        return sum(t[2] for t in self._threads) / (end - start)

    def workload(self, items: int) -> Optional[costmodel.Workload]:
        """The cost model's figures for `items` items at the frontier."""
        per_item = self.per_item(serial=True)
        if per_item is None:
            return None
        prior = self.prior
        ipc_items = self._ipc_items
        return costmodel.Workload(
            items=max(1, items),
            item_seconds=per_item,
            cpu_share=self.cpu_share() or 1.0,
            item_cv=prior.item_cv if prior is not None else 0.0,
            parent_ipc_seconds=(self._parent_ipc / ipc_items) if ipc_items else (
                prior.parent_ipc_seconds if prior is not None else 0.0),
            worker_ipc_seconds=(self._worker_ipc / ipc_items) if ipc_items else (
                prior.worker_ipc_seconds if prior is not None else 0.0),
            transfer_bytes=(self._bytes / self._byte_items) if self._byte_items else (
                prior.transfer_bytes if prior is not None else 0.0),
            peak_memory=prior.peak_memory if prior is not None else 0,
        )


class TaskSizer:
    """The size of the next task and its time budget."""

    def __init__(self, *, target_chunk_duration: float, workers: int, task_overhead: float,
                 total_items: Optional[int], fixed_chunksize: Optional[int]) -> None:
        self.target = target_chunk_duration
        self.workers = max(1, workers)
        self.task_overhead = task_overhead
        self.total_items = total_items
        self.fixed = fixed_chunksize

    @property
    def budget(self) -> float:
        """The most seconds a task may run before its worker stops it (0: never, the
        caller fixed the chunk size)."""
        return 0.0 if self.fixed else BUDGET_FACTOR * self.target

    def budget_for(self, size: int, costs: ItemCosts) -> float:
        """Seconds after which a worker stops a task of `size` items: twice what it was
        planned to take (a cost that jumps is noticed at the next task, not after a
        whole target), at least BUDGET_FLOOR_SECONDS, at most `budget` unless the task
        was planned longer than the target (a serial run's last task)."""
        cap = self.budget
        per_item = costs.per_item()
        if not cap or per_item is None or per_item <= 0:
            return cap
        planned = size * per_item
        budget = max(BUDGET_FLOOR_SECONDS, PLANNED_BUDGET_FACTOR * planned)
        return budget if self.workers == 1 and planned > self.target else min(cap, budget)

    def next_size(self, costs: ItemCosts, dispatched: int) -> int:
        """Items for the next task, `dispatched` items having been sent so far."""
        remaining = None if self.total_items is None else max(
            1, self.total_items - dispatched)
        if self.fixed:
            return self.fixed
        per_item = costs.per_item()
        if per_item is None or per_item <= 0:
            size = GROWTH * max(costs.largest_task, 0) or 1
        else:
            # One worker: the estimate was measured where the task runs (the calling
            # process), so the first task is a whole target; a pool's first tasks probe.
            share = 1.0 if self.workers == 1 else FIRST_TASK_SHARE
            first = max(1, int(share * self.target / per_item))
            cap = max(GROWTH * costs.largest_task, first)
            size = min(max(1, int(self.target / per_item)), cap)
            smallest = max(1, math.ceil(
                costmodel.MIN_TASK_OVERHEAD_RATIO * self.task_overhead / per_item))
            if remaining is not None and self.workers > 1:  # one worker finishes alone
                size = min(size, max(math.ceil(remaining / (TAIL_SPLIT * self.workers)),
                                     smallest))
            size = max(size, min(smallest, cap))  # not below the overhead floor
            if remaining is not None and self.workers == 1 and remaining <= 2 * size:
                size = remaining  # one worker: the rest in one task, one list fewer to join
        if remaining is not None:
            size = min(size, remaining)
        return max(1, size)

    def serial_task(self, costs: ItemCosts, dispatched: int, rest: Optional[int]
                    ) -> tuple[int, float]:
        """Items and budget of a task in the calling process. With `rest` items left
        that can be read in place (a list, tuple or range), it is handed them all and
        stopped by time, at the planned size's time: the sample's item cost misses by
        several times for the cheapest functions, and a run that comes out as one task
        has no result lists to join (joining costs ~10 % of a cheap serial run: every
        result is touched twice)."""
        size = self.next_size(costs, dispatched)
        per_item = costs.per_item()
        if rest is not None and size < rest and per_item is not None and not self.fixed:
            return rest, max(BUDGET_FLOOR_SECONDS, size * per_item)
        return size, self.budget_for(size, costs)

    def planned_size(self, costs: ItemCosts) -> Optional[int]:
        """The task size the measured cost asks for (no probe cap, no tail), or None."""
        if self.fixed:
            return self.fixed
        per_item = costs.per_item()
        if per_item is None or per_item <= 0:
            return None
        smallest = math.ceil(costmodel.MIN_TASK_OVERHEAD_RATIO * self.task_overhead / per_item)
        size = max(1, int(self.target / per_item), smallest)
        return size if self.total_items is None else min(size, max(1, self.total_items))

    def pace(self, costs: ItemCosts) -> float:
        """Seconds per item a task may fall behind at before its worker stops it
        (worker.PACE_SLACK_SECONDS): twice the planned cost of an item; 0 (no pace)
        with the chunk size fixed or no estimate yet."""
        per_item = costs.per_item()
        if not self.budget or per_item is None or per_item <= 0:
            return 0.0
        return PLANNED_BUDGET_FACTOR * per_item

    def pool_pace_floor(self, costs: ItemCosts) -> float:
        """A pool task's pace floor (worker.PACE_SLACK_SECONDS): once every worker has
        measured items (MIN_EVIDENCE_TASKS tasks each), the planned pace itself, so a
        task's first slice may no longer tighten it. That slice is a few milliseconds
        of work: for items whose cost varies (2 % of them 100x dearer) or workers that
        a busy machine time-slices, it often ran at well under the mean cost, and the
        task was then stopped at an ordinary stretch (half the tasks of such a run).
        Before that, the estimate may come from cold workers and the slice corrects it.
        """
        if costs.tasks < MIN_EVIDENCE_TASKS * self.workers:
            return 0.0
        return self.pace(costs)

    def first_step(self, costs: ItemCosts, budget: float) -> int:
        """Items in a task's first slice (see worker.run_task): about `budget` /
        SLICES_PER_BUDGET of work, or 1 before any estimate."""
        per_item = costs.per_item()
        if not budget or per_item is None or per_item <= 0:
            return 1
        return max(1, int(budget / SLICES_PER_BUDGET / per_item))


class SerialPaceFloor:
    """A serial task's pace floor in automatic mode (worker.PACE_SLACK_SECONDS): the
    item cost from which `review_executor` would move the rest to a pool. Below it a
    task stopped for falling behind would only be split (its results joined) for a
    review that keeps it serial. Worked out again (about a millisecond) when the
    items left have halved."""

    def __init__(self, target_chunk_duration: float, min_speedup: float) -> None:
        self.target = target_chunk_duration
        self.min_speedup = min_speedup
        self._last: Optional[tuple[int, float]] = None  # (items left, floor)

    def floor(self, costs: ItemCosts, remaining: int, machine: costmodel.MachineCosts
              ) -> float:
        """Seconds per item; 0 (no floor) before any estimate."""
        last = self._last
        if last is not None and remaining > last[0] / 2:
            return last[1]
        w = costs.workload(remaining)
        if w is None:
            return 0.0
        value = costmodel.pool_pays_from(w, machine, self.target, self.min_speedup)
        self._last = (remaining, value)
        return value


def review_executor(kind: str, workers: int, costs: ItemCosts, remaining: int,
                    machine: costmodel.MachineCosts, target_chunk_duration: float,
                    min_speedup: float) -> Optional[costmodel.Plan]:
    """A better plan for the `remaining` items than `kind` with `workers`, or None.

    Serial moves to a pool when the items turned out dear enough; a process pool moves
    to threads when the workers measured a function that waits; threads move to
    processes when the GIL is saturated by a function that computes. Another executor
    must be predicted SWITCH_GAIN faster, its start included.
    """
    w = costs.workload(remaining)
    if w is None or remaining <= 0:
        return None
    if kind == "serial":
        plan = costmodel.best_plan(w, machine, costmodel.EXECUTOR_TYPES, None,
                                   target_chunk_duration, min_speedup)
        return None if plan.executor_type == "serial" else plan
    if costs.tasks < MIN_EVIDENCE_TASKS * workers:
        return None
    if kind == "process" and w.waits:
        current = costmodel.predict_process(w, workers, costmodel.chunk_for(
            w, "process", workers, target_chunk_duration, machine), machine)
        current -= machine.process_start * (1 + workers) / 2  # already started
        other = costmodel.best_plan(w, machine, ["thread"], None, target_chunk_duration)
    elif kind == "thread" and machine.gil and (costs.gil_load() or 0) >= GIL_SATURATED:
        current = costmodel.predict_thread(w, workers, costmodel.chunk_for(
            w, "thread", workers, target_chunk_duration, machine), machine)
        other = costmodel.best_plan(w, machine, ["process"], None, target_chunk_duration)
    else:
        return None
    return other if other.seconds * SWITCH_GAIN < current else None


def revised_estimate(costs: ItemCosts, elapsed: float, remaining: int, workers: int,
                     kind: str, machine: costmodel.MachineCosts,
                     target_chunk_duration: float) -> Optional[float]:
    """The estimated speedup of the whole run, from what was measured so far: the
    whole job serially (measured items + the rest at the frontier's cost) against the
    time spent + the rest as the cost model predicts it on the current workers."""
    w = costs.workload(max(remaining, 1))
    if w is None:
        return None
    if remaining <= 0:
        rest = 0.0
    elif kind == "serial":
        rest = costmodel.predict_serial(w)
    else:
        chunk = costmodel.chunk_for(w, kind, workers, target_chunk_duration, machine)
        if kind == "thread":
            rest = costmodel.predict_thread(w, workers, chunk, machine)
            rest -= machine.thread_start * min(workers, w.items)
        else:
            rest = costmodel.predict_process(w, workers, chunk, machine)
            rest -= machine.process_start * (1 + min(workers, w.items)) / 2
    job_serial = costs.serial_seconds + max(remaining, 0) * w.item_seconds
    return costmodel.speedup(job_serial, elapsed, max(rest, 0.0))
