"""The mechanism of a run: hand out the input, submit tasks, take reports back in any
order, give results back in input order.

- `InputCursor` reads the input lazily: slices of a list, tuple or range (no copy of
  the whole input), chunks of an iterator. A task a worker stopped early (its time
  budget) gives back its remaining items, which go out first again.
- `TaskFlow` keeps at most a window of tasks in flight or finished but not yet handed
  back (memory stays bounded for unbounded inputs), on one or more pools (the run
  may move to another pool), enforces `task_timeout` on the time a task really ran,
  and turns a dead worker into WorkerDiedError.
"""

from __future__ import annotations

import itertools
import math
import pickle
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Optional

from amorsize.errors import TaskTimeoutError, WorkerDiedError, items_text
from amorsize.input_slice import InputSlice, readable_in_place
from amorsize.pools import ManagedPool
from amorsize.worker import ChunkReport, TaskFunction, first_unpicklable, run_task

# Iterator input is taken in lists of at most this many items at a time, so a task of
# cheap items in the calling process does not hold a huge copy of the input.
MAX_ITERATOR_CHUNK = 65_536
# While a task_timeout applies, the parent looks at running tasks at least this often.
TIMEOUT_POLL_SECONDS = 0.5

_task_keys = itertools.count(1)  # process-wide: the workers' start board is shared


class InputCursor:
    """The input, handed out in order, with given-back items first."""

    def __init__(self, data: Iterable[Any], start: int, rest: Optional[Iterator[Any]] = None
                 ) -> None:
        self.sliceable = isinstance(data, (list, tuple, range))
        self.data = data
        self.iterator = rest if rest is not None else iter(data)
        self.position = start  # input index of the next new item
        self.given_back: deque[tuple[int, list[Any]]] = deque()
        self.exhausted = False

    @property
    def empty(self) -> bool:
        """Nothing left to hand out."""
        return self.exhausted and not self.given_back

    @property
    def handed_out(self) -> int:
        """Items handed out for good so far (given-back ones not counted)."""
        return self.position - sum(len(items) for _, items in self.given_back)

    def rewind(self, position: int) -> None:
        """Hand out again from `position` (an input read in place: the items a task in
        the calling process did not get to need no copy)."""
        self.position = position
        self.exhausted = False

    def give_back(self, start: int, items: list[Any]) -> None:
        """Items a worker did not get to; handed out again before new ones."""
        if items:
            self.given_back.appendleft((start, items))

    def take(self, count: int, as_list: bool = True) -> Optional[tuple[int, Any]]:
        """(input index of the first item, up to `count` items), or None at the end.
        A list when `as_list`; else a list, tuple or range is an `InputSlice` (no copy:
        a task in the calling process reads the input itself)."""
        if self.given_back:
            start, items = self.given_back.popleft()
            if len(items) > count:
                self.given_back.appendleft((start + count, items[count:]))
                items = items[:count]
            return start, items
        if self.exhausted:
            return None
        start = self.position
        part: Any
        if not as_list and readable_in_place(self.data):
            stop = min(start + count, len(self.data))  # type: ignore[arg-type]
            part = InputSlice(self.data, start, stop)  # type: ignore[arg-type]
        elif self.sliceable:
            part = self.data[start:start + count]  # type: ignore[index]
            if as_list and not isinstance(part, list):
                part = list(part)
        else:
            part = list(itertools.islice(self.iterator, min(count, MAX_ITERATOR_CHUNK)))
        if len(part) < count:
            self.exhausted = True
        if not part:
            return None
        self.position = start + len(part)
        return start, part


@dataclass
class _Task:
    key: int
    chunk_id: int
    start: int
    items: list[Any]
    pool: ManagedPool
    submitted: float  # monotonic


class TaskFailed(Exception):
    """A task's function raised: carries its report (the run decides what to raise)."""

    def __init__(self, report: ChunkReport) -> None:
        super().__init__(report.error)
        self.report = report


class TaskFlow:
    """Tasks in flight on the run's pools, and results waiting for their turn."""

    def __init__(self, cursor: InputCursor, window: int,
                 task_timeout: Optional[float] = None) -> None:
        self.cursor = cursor
        self.window = max(1, window)
        self.task_timeout = task_timeout
        self.in_flight: dict[Future[ChunkReport], _Task] = {}
        self.ready: dict[int, list[Any]] = {}
        self.next_index = 0
        self.chunk_ids = itertools.count()

    def set_first(self, index: int) -> None:
        """The input index the results start at."""
        self.next_index = index

    def next_chunk_id(self) -> int:
        """A new task id (chunk_id), in order of hand-out."""
        return next(self.chunk_ids)

    @property
    def has_room(self) -> bool:
        """Whether another task may go out (the window counts waiting results too)."""
        return len(self.in_flight) + len(self.ready) < self.window

    @property
    def done(self) -> bool:
        """Input handed out, every task back, every result handed on."""
        return self.cursor.empty and not self.in_flight and not self.ready

    def submit(self, pool: ManagedPool, func: TaskFunction, size: int, budget: float,
               step: int, exact: bool, pace: float = 0.0, pace_floor: float = 0.0) -> bool:
        """Hand out up to `size` items as one task on `pool`; False at the end of input."""
        taken = self.cursor.take(size)
        if taken is None:
            return False
        start, items = taken
        key = next(_task_keys)
        chunk_id = self.next_chunk_id()
        payload: Any = items
        if pool.kind == "process":
            try:
                payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                bad = first_unpicklable(items)
                raise TypeError(
                    f"worker processes need picklable input items: the item at input "
                    f"position {start + bad} cannot be pickled ({error}); make the items "
                    "picklable or use executor_type='thread'") from error
        future = pool.executor.submit(run_task, func, key, chunk_id, payload, budget, step,
                                      pool.kind != "thread", exact, pace, pace_floor)
        self.in_flight[future] = _Task(key, chunk_id, start, items, pool, time.monotonic())
        return True

    def collect(self) -> list[ChunkReport]:
        """Wait for at least one task to come back (or a task_timeout to pass); return
        the reports, oldest input first. Raises WorkerDiedError, TaskTimeoutError."""
        if not self.in_flight:
            return []
        timeout = None
        if self.task_timeout is not None:
            timeout = min(TIMEOUT_POLL_SECONDS, self.task_timeout / 4)
        finished, _ = wait(list(self.in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        reports = [self._arrived(future) for future in finished]
        if self.task_timeout is not None:
            self._check_timeouts()
        reports.sort(key=lambda r: r.start_index)
        return reports

    def _arrived(self, future: Future[ChunkReport]) -> ChunkReport:
        task = self.in_flight.pop(future)
        try:
            report = future.result()
        except BrokenProcessPool as broken:
            task.pool.broken = True
            raise WorkerDiedError(
                "a worker process died without returning its task "
                f"({items_text(task.start, len(task.items))} of the input): killed by a "
                "signal, crashed, ran out of memory, or called os._exit; the run was "
                "stopped and the remaining workers shut down") from broken
        report.start_index = task.start
        report.executor_kind = task.pool.kind
        if isinstance(report.results, bytes):
            t0 = time.perf_counter()
            report.results = pickle.loads(report.results)
            report.parent_ipc_seconds = time.perf_counter() - t0
        if report.error is not None:
            raise TaskFailed(report)
        if report.stopped_early:
            self.cursor.give_back(task.start + report.done, task.items[report.done:])
        if report.done:
            self.ready[task.start] = report.results
        return report

    def accept(self, report: ChunkReport, items: Any) -> None:
        """A task the calling process ran itself (`items` as it got them)."""
        if report.error is not None:
            raise TaskFailed(report)
        if report.stopped_early and (isinstance(items, InputSlice) and not self.cursor.given_back
                                     and self.cursor.position == items.stop):
            self.cursor.rewind(items.start + report.done)
        elif report.stopped_early:
            rest = items[report.done:]
            self.cursor.give_back(report.start_index + report.done,
                                  rest if isinstance(rest, list) else list(rest))
        if report.done:
            self.ready[report.start_index] = report.results

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        limit = self.task_timeout or 0.0
        for task in list(self.in_flight.values()):
            started = task.pool.task_started(task.key)
            if started is None:
                if task.pool.kind != "external":
                    continue  # still queued behind another task
                pid, since = None, task.submitted  # no word from the worker: submission
            else:
                pid, since = started
            if now - since <= limit:
                continue
            if pid is not None:
                task.pool.kill_worker(pid)
            what = items_text(task.start, len(task.items))
            action = ("its worker process was killed" if pid is not None else
                      "a thread cannot be killed: it is left running in the background"
                      if task.pool.kind == "thread" else "it was cancelled")
            raise TaskTimeoutError(
                f"task {task.chunk_id} ({what} of the input) ran longer than "
                f"task_timeout={limit:g} s; {action}",
                chunk_id=task.chunk_id, start_index=task.start,
                item_count=len(task.items), timeout=limit)

    def results(self) -> Iterator[list[Any]]:
        """The results ready in input order, handed on (and forgotten) one task at a time."""
        ready = self.ready
        while self.next_index in ready:
            results = ready.pop(self.next_index)
            self.next_index += len(results)
            yield results

    def ready_now(self) -> bool:
        """Whether the next results in input order are ready to hand on."""
        return self.next_index in self.ready

    def pending_futures(self) -> list[Future[ChunkReport]]:
        """Futures still in flight (to cancel on failure)."""
        return list(self.in_flight)

    def in_flight_on(self, pool: ManagedPool) -> int:
        """Tasks in flight on `pool`."""
        return sum(1 for task in self.in_flight.values() if task.pool is pool)

    def in_flight_items(self) -> int:
        """Items in tasks in flight."""
        return sum(len(task.items) for task in self.in_flight.values())


def window_for(workers: int, max_in_flight: Optional[int]) -> int:
    """Tasks in flight or waiting to be handed on: two per worker (one running, one
    queued, so no worker waits for the parent), plus room for results out of order."""
    return max_in_flight or max(4, math.ceil(4 * workers))
