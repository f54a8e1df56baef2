"""Stop a list comprehension from another thread, without slicing its input.

A serial task of cheap items would cost about 20 % more than a list comprehension if
it ran in slices to look at the clock between them (each slice's results are joined).
Instead, the task runs one comprehension straight over the input's own iterator (a
list, tuple or range: amorsize/input_slice.py), and a watchdog thread looks at the
clock for it: when the task is past its budget or behind its pace (`StopRule`, as in
worker._run_slices), the watchdog moves the iterator to the end of the input
(`__setstate__`, the iterator's pickling hook). The comprehension then ends normally
after the item in progress: every item it took has its result, and the items after it
are untouched, so nothing runs twice.

Under the GIL an iterator's `__next__` and `__setstate__` never interleave.
"""

from __future__ import annotations

import operator
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

MIN_INTERVAL_SECONDS = 0.005
PACE_FACTOR = 2.0  # a task may take this many times what its first items took, per item


def calibrated_pace(pace: float, elapsed: float, done: int, floor: float = 0.0) -> float:
    """The pace after a task's first `done` items took `elapsed` seconds: at most
    PACE_FACTOR times their cost (a planned pace from cold workers can be far too high),
    never below `floor` (a serial task: the item cost from which a pool would pay; a
    slower stretch short of that is the machine, not a reason to stop). One rule for
    worker._run_slices and the watchdog."""
    return max(floor, min(pace, PACE_FACTOR * elapsed / done))


@dataclass(eq=False)
class StopRule:
    """When a task with a time budget stops: past `budget` seconds, or once its first
    `step` items have calibrated the pace (`calibrated_pace`), behind it by more than
    `slack`. worker._run_slices asks between slices, the watchdog when the task could
    first be late (`Watch.next_look`); worker._run_slices's item-by-item loop keeps
    the same rule inline (a method call per item would cost several per cent of items
    that cheap)."""

    started: float
    budget: float
    pace: float  # seconds per item; 0: none
    step: int  # items after which the pace is calibrated
    slack: float
    pace_floor: float = 0.0
    behind: float = field(default=float("inf"), init=False)
    calibrated_at: int = field(default=0, init=False)

    def late(self, now: float, done: int) -> bool:
        """Past the budget, or behind the pace once calibrated, with `done` items run."""
        if now >= self.started + self.budget:
            return True
        if self.pace > 0 and self.behind == float("inf"):
            if done >= self.step and done > 0:
                self.pace = calibrated_pace(self.pace, now - self.started, done,
                                            self.pace_floor)
                self.behind = now + self.slack
                self.calibrated_at = done
            return False
        soonest = self.earliest_late(done)
        return soonest is not None and now >= soonest

    def earliest_late(self, done: int) -> Optional[float]:
        """The soonest time the task can be late with `done` items run (more items
        only push it back); None before the pace is calibrated."""
        deadline = self.started + self.budget
        if self.pace <= 0:
            return deadline
        if self.behind == float("inf"):
            return None
        return min(deadline, self.behind + self.pace * (done - self.calibrated_at))


@dataclass(eq=False)
class Watch:
    """One task being watched: its iterator and the rule it stops by."""

    iterator: Iterator[Any]  # a list, tuple or range iterator: length_hint, __setstate__
    end: int  # the index that exhausts it (the length of the input)
    rule: StopRule
    interval: float
    remaining_at_start: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining_at_start = operator.length_hint(self.iterator)

    def done(self) -> int:
        """Items the iterator has handed out so far."""
        return self.remaining_at_start - operator.length_hint(self.iterator)

    def late(self, now: float) -> bool:
        """Whether the task should stop now (its `rule`)."""
        return self.rule.late(now, self.done())

    def next_look(self, now: float) -> float:
        """When the watchdog should look again: every `interval` until the pace is
        calibrated, then when the task could first be late (`StopRule.earliest_late`),
        at least MIN_INTERVAL_SECONDS on. Each look takes the GIL from the task's
        thread, and under a busy machine each handover can stall it (a task of cheap
        items looked at every 15 ms lost ~10 % of its time that way, which read as
        the function waiting); a task well ahead of its pace is looked at seldom."""
        soonest = self.rule.earliest_late(self.done())
        if soonest is None:
            return now + self.interval
        return max(now + MIN_INTERVAL_SECONDS, soonest)


class Watchdog:
    """One daemon thread per process, watching the serial tasks its threads run (one
    per thread at most; usually one in all). Started on first use, and again in a
    forked child (threads do not survive a fork)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._watches: list[Watch] = []
        self._thread: Optional[threading.Thread] = None
        self._fork_hook = False

    def _forget(self) -> None:
        """In a forked child: the thread is gone, and its lock may have been held at
        the fork; start afresh."""
        self._condition = threading.Condition()
        self._watches = []
        self._thread = None

    def watch(self, watch: Watch) -> None:
        """Start watching `watch` (until `release`)."""
        if not self._fork_hook:  # registered on first use, not at import
            self._fork_hook = True
            os.register_at_fork(after_in_child=self._forget)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="amorsize-watchdog",
                                                daemon=True)
                self._thread.start()
            self._watches.append(watch)
            self._condition.notify()

    def release(self, watch: Watch) -> None:
        """Stop watching `watch`."""
        with self._condition:
            if watch in self._watches:
                self._watches.remove(watch)

    def _loop(self) -> None:
        condition = self._condition  # this thread's; a forked child makes its own
        with condition:
            while True:
                while not self._watches:
                    condition.wait()
                now = time.perf_counter()
                condition.wait(min(w.next_look(now) for w in self._watches) - now)
                now = time.perf_counter()
                for watch in list(self._watches):
                    if watch.late(now):
                        watch.iterator.__setstate__(watch.end)  # type: ignore[attr-defined]
                        self._watches.remove(watch)


watchdog = Watchdog()
