"""Worker side of a task: run one chunk and measure it. Nothing here publishes.

`run_task` is what every executor (process, thread, the calling process, or a foreign
`concurrent.futures.Executor` such as dask's) runs. It returns a `ChunkReport`: the
results plus what the worker measured (compute time, CPU time and run-queue wait of
its thread, pickled sizes and times). The parent plans the next tasks from these
reports and turns them into hook events.

A task may carry a time budget: the worker then runs its items in slices and stops
after the slice that reaches the budget, returning the items it did; the parent sends
the rest again. So a task sized from cheap items never runs for minutes when the
items turn dear along the input.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from amorsize import lifeline
from amorsize.errors import portable_exception
from amorsize.input_slice import InputSlice
from amorsize.measure import thread_clock
from amorsize.watchdog import MIN_INTERVAL_SECONDS, StopRule, Watch, calibrated_pace, watchdog

# A time-boxed task of items estimated dear enough (a first slice of at most
# PER_ITEM_CHECK_STEP items) looks at the clock after every item: a cost that jumps
# along the input then overshoots the budget by one item at most, for well under 1 %
# of such an item's time. Cheaper items run in slices of about budget /
# SLICES_PER_BUDGET, the clock read between slices.
PER_ITEM_CHECK_STEP = 2000
SLICES_PER_BUDGET = 64
# A task may also carry a pace (seconds per item: twice the cost it was planned at).
# After its first slice (or first `step` items), the pace becomes at most twice what
# those items took here (a planned cost may come from cold workers, several times too
# high), and the task stops once the items after them take longer than
# PACE_SLACK_SECONDS + pace x their count. A cost that jumps inside a task is then
# seen after about twice the planned time of the items before the jump (20 ms at
# least), not after the whole budget. A serial task in automatic mode also carries a
# pace floor, the item cost from which a pool would pay: short of it, stopping would
# only split the task (its results joined) for a review that keeps it serial, so a
# stretch slowed by a busy machine does not stop it. A pool task's floor is its planned
# pace once the workers have measured the items (policy.TaskSizer.pool_pace_floor).
PACE_SLACK_SECONDS = 0.02

_local = threading.local()


def _worker_started_at() -> float:
    """This worker's own start: the first time this thread of this process ran a task
    (per thread: thread-pool workers are workers too; keyed by pid: a forked child
    inherits the parent's thread state)."""
    pid = os.getpid()
    started: Optional[tuple[int, float]] = getattr(_local, "started", None)
    if started is None or started[0] != pid:
        started = (pid, time.time())
        _local.started = started
    return started[1]


def worker_identity() -> str:
    """A key naming this worker: dask worker address, thread, or process."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:  # maybe a dask.distributed worker
        try:
            return str(distributed.get_worker().address)
        except (AttributeError, ValueError):
            pass
    if threading.current_thread() is threading.main_thread():
        return f"pid:{os.getpid()}"
    return f"pid:{os.getpid()}/thread:{threading.get_ident()}"


@dataclass
class ChunkReport:
    """What a worker measured for one task, returned beside the results.

    `done` items have results; `item_count` also counts the failing item. With a time
    budget, `done` may be less than the items sent (`stopped_early`): the parent sends
    the rest again. Times: `wall_*` are time.time() (spans), `duration` the
    perf_counter compute time, `cpu_seconds` and `run_delay` the worker thread's.
    """

    chunk_id: int
    item_count: int
    done: int
    results: Any  # list, or bytes (the list pickled in a process worker)
    wall_start: float
    wall_end: float
    duration: float
    cpu_seconds: float
    run_delay: float
    pid: int
    worker_key: str
    worker_started_at: float
    stopped_early: bool = False
    ipc_seconds: float = 0.0  # in the worker: unpickling the items, pickling results
    result_bytes: Optional[int] = None
    error: Optional[BaseException] = None
    error_traceback: Optional[str] = None
    error_index: Optional[int] = None  # index in the task of the failing item, if known
    # Set by the parent when the report arrives.
    start_index: int = 0
    parent_ipc_seconds: float = 0.0
    sampled: bool = False  # the dry run of a pool run, in the calling process
    executor_kind: str = ""  # serial, thread, process or external


class FunctionPayload:
    """A function shipped by value with cloudpickle, unpickled once per worker."""

    _cache: dict[bytes, Callable[[Any], Any]] = {}

    def __init__(self, func: Callable[[Any], Any]) -> None:
        import cloudpickle

        self.data = cloudpickle.dumps(func)

    def load(self) -> Callable[[Any], Any]:
        """Return the function, unpickling it the first time in this process."""
        func = self._cache.get(self.data)
        if func is None:
            func = pickle.loads(self.data)
            self._cache[self.data] = func
        return func


TaskFunction = Union[Callable[[Any], Any], FunctionPayload]


class _Progress:
    """The results so far of one task, and where it failed, if it did."""

    __slots__ = ("results", "failed_at")

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.failed_at: Optional[int] = None


def _reader(items: Sequence[Any]) -> Iterator[Any]:
    """An iterator over `items` without a copy, which knows how many items it has left
    (list, tuple and range iterators do)."""
    return items.reader() if isinstance(items, InputSlice) else iter(items)


def _run_part(func: Callable[[Any], Any], reader: Iterator[Any], count: int, exact: bool,
              progress: _Progress) -> None:
    """Run the next `count` items of `reader` into `progress.results`. `exact` keeps the
    results of a failing slice up to the failing item (map into extend); otherwise a
    comprehension (faster for cheap items: its list becomes the results when it is the
    first, no copy), and the failing item is found from how far the reader got."""
    results = progress.results
    part = itertools.islice(reader, count)
    if exact:
        results.extend(map(func, part))
        return
    left = operator.length_hint(reader)
    try:
        computed = [func(item) for item in part]
    except BaseException:
        taken = left - operator.length_hint(reader)
        if left and taken:
            progress.failed_at = len(results) + taken - 1
        raise
    if results:
        results += computed
    else:
        progress.results = computed


def _run_slices(func: Callable[[Any], Any], items: Sequence[Any], budget: float, step: int,
                exact: bool, progress: _Progress, pace: float = 0.0,
                clock: Callable[[], float] = time.perf_counter, pace_floor: float = 0.0
                ) -> int:
    """Run `items` into `progress` until done, past `budget` seconds, or behind `pace`
    (see PACE_SLACK_SECONDS; calibrated never below `pace_floor`); return how many were
    run. Slices are read from one iterator, never copied. `clock` is injectable for
    tests."""
    count = len(items)
    reader = _reader(items)
    if budget <= 0 or step >= count:
        _run_part(func, reader, count, exact, progress)
        return count
    started = clock()
    if step <= PER_ITEM_CHECK_STEP:
        # watchdog.StopRule, inline: a method call per item would cost several per cent.
        deadline = started + budget
        calibrating = pace > 0  # the first `step` items set the pace
        behind = math.inf  # never behind: no pace, or not calibrated yet
        append, results = progress.results.append, progress.results
        try:
            for item in itertools.islice(reader, count):
                append(func(item))
                now = clock()
                if calibrating and len(results) >= step:
                    calibrating = False
                    pace = calibrated_pace(pace, now - started, len(results), pace_floor)
                    behind = now + PACE_SLACK_SECONDS
                behind += pace
                if now >= deadline or now >= behind:
                    break
        except BaseException:
            progress.failed_at = len(results)  # item by item: exact
            raise
        return len(results)
    slice_seconds = budget / SLICES_PER_BUDGET
    rule = StopRule(started, budget, pace, step, PACE_SLACK_SECONDS, pace_floor)
    done = 0
    while done < count:
        size = min(step, count - done)
        t0 = clock()
        _run_part(func, reader, size, exact, progress)
        done += size
        t1 = clock()
        if rule.late(t1, done):
            break
        took = t1 - t0
        grown = 4 * size
        step = max(1, min(grown, int(size * slice_seconds / took))) if took > 0 else grown
    return done


def _run_watched(func: Callable[[Any], Any], items: InputSlice, budget: float, step: int,
                 pace: float, pace_floor: float, progress: _Progress) -> int:
    """A task that runs to the end of the caller's list, tuple or range: one
    comprehension over the input's own iterator, stopped by the watchdog (same budget and pace rules
    as _run_slices; see amorsize/watchdog.py). No slice, no join: a serial run of
    cheap items costs what a list comprehension costs."""
    reader = items.reader()
    rule = StopRule(time.perf_counter(), budget, pace, step, PACE_SLACK_SECONDS, pace_floor)
    watch = Watch(reader, len(items.data), rule,
                  max(MIN_INTERVAL_SECONDS, budget / SLICES_PER_BUDGET))
    watchdog.watch(watch)
    try:
        progress.results = [func(item) for item in reader]
    except BaseException:
        taken = watch.done()
        if taken:
            progress.failed_at = taken - 1
        raise
    finally:
        watchdog.release(watch)
    return len(progress.results)


def run_task(
    func: TaskFunction,
    key: int,
    chunk_id: int,
    items: Union[Sequence[Any], bytes, Iterable[Any]],
    budget: float = 0.0,
    step: int = 1,
    portable: bool = True,
    exact: bool = True,
    pace: float = 0.0,
    pace_floor: float = 0.0,
) -> ChunkReport:
    """Call `func` on the items of one task; stop at the first exception.

    `items` is a list, the list pickled (bytes: the results come back pickled too,
    and the worker times both), or a lazy iterable (the calling process streams the
    input without building a list; no time budget then). `portable` makes the
    exception survive pickling. `pace` and `pace_floor`: see PACE_SLACK_SECONDS.
    KeyboardInterrupt is not caught: an interrupted worker stops.
    """
    if isinstance(func, FunctionPayload):
        func = func.load()
    lifeline.mark_task_start(key)
    started_at = _worker_started_at()
    pickled = isinstance(items, bytes)
    ipc = 0.0
    if pickled:
        t0 = time.perf_counter()
        items = pickle.loads(items)  # type: ignore[arg-type]
        ipc = time.perf_counter() - t0
    progress = _Progress()
    error: Optional[BaseException] = None
    error_tb: Optional[str] = None
    error_index: Optional[int] = None
    sized = isinstance(items, Sequence)
    wall_start = time.time()
    cpu0, delay0 = thread_clock()
    t0 = time.perf_counter()
    try:
        if (isinstance(items, InputSlice) and budget > 0 and not exact and step < len(items)
                and items.stop == len(items.data)):
            done = _run_watched(func, items, budget, step, pace, pace_floor, progress)
        elif sized:
            done = _run_slices(func, items, budget, step, exact, progress,  # type: ignore[arg-type]
                              pace, pace_floor=pace_floor)
        else:
            progress.results.extend(map(func, items))  # keeps those before a failure
            done = len(progress.results)
    except (Exception, SystemExit) as exc:  # sys.exit() in the function fails the item
        error_tb = traceback.format_exc()
        error = portable_exception(exc) if portable else exc
        if exact or not sized:
            error_index = len(progress.results)
        elif progress.failed_at is not None:
            error_index = progress.failed_at
        done = len(progress.results)
    results = progress.results
    duration = time.perf_counter() - t0
    cpu1, delay1 = thread_clock()
    wall_end = time.time()
    lifeline.mark_task_end(key)
    count = len(items) if sized else done + (error is not None)  # type: ignore[arg-type]
    payload: Any = results
    result_bytes = None
    if error is not None:
        count = done + 1 if error_index is not None else count
        payload = []
    elif pickled:
        t1 = time.perf_counter()
        try:
            payload = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            bad = first_unpicklable(results)
            error_tb = traceback.format_exc()
            error = portable_exception(exc)
            error_index, payload = bad, []
            count, done = bad + 1, bad
        else:
            result_bytes = len(payload)
        ipc += time.perf_counter() - t1
    return ChunkReport(
        chunk_id=chunk_id,
        item_count=count,
        done=done,
        results=payload,
        wall_start=wall_start,
        wall_end=wall_end,
        duration=duration,
        cpu_seconds=cpu1 - cpu0,
        run_delay=delay1 - delay0,
        pid=os.getpid(),
        worker_key=worker_identity(),
        worker_started_at=started_at,
        stopped_early=error is None and sized and done < count,
        ipc_seconds=ipc,
        result_bytes=result_bytes,
        error=error,
        error_traceback=error_tb,
        error_index=error_index,
    )


def first_unpicklable(values: list[Any]) -> int:
    """Index of the first value that cannot be pickled (a failure path only)."""
    for index, value in enumerate(values):
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return index
    return 0
