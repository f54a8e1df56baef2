"""The watchdog that stops a serial task's comprehension without slicing its input
(amorsize/watchdog.py): its rules on an injected clock, and a real stop."""

from __future__ import annotations

import time

import pytest

from amorsize.dispatch import InputCursor
from amorsize.watchdog import StopRule, Watch
from amorsize.worker import run_task


def advance(iterator: object, count: int) -> None:
    for _ in range(count):
        next(iterator)  # type: ignore[call-overload]


def test_a_watch_calibrates_its_pace_on_the_first_items_then_stops_when_behind() -> None:
    items = list(range(100))
    reader = iter(items)
    watch = Watch(reader, end=100, rule=StopRule(started=0.0, budget=10.0, pace=0.004,
                                                 step=10, slack=0.02), interval=0.005)
    advance(reader, 5)
    assert not watch.late(0.005)  # 5 items: not calibrated yet
    advance(reader, 5)
    assert not watch.late(0.010)  # 10 items in 10 ms: pace min(4 ms, 2 x 1 ms) = 2 ms
    assert watch.rule.pace == pytest.approx(0.002)
    advance(reader, 1)  # behind at 10 ms + 20 ms slack + 2 ms for the 11th item
    assert not watch.late(0.0315)
    assert watch.late(0.0325)
    assert watch.done() == 11


def test_without_a_pace_a_watch_stops_at_its_budget_only() -> None:
    reader = iter(list(range(100)))
    watch = Watch(reader, end=100, rule=StopRule(started=0.0, budget=1.0, pace=0.0,
                                                 step=10, slack=0.02), interval=0.005)
    advance(reader, 50)
    assert not watch.late(0.999)
    assert watch.late(1.0)


def dear_after_50(x: int) -> int:
    if x >= 50:
        time.sleep(0.001)  # 100,000 of these would take 100 s
    return x * 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("source", [list, tuple, range])
def test_the_watchdog_stops_a_task_whose_items_turn_dear_and_nothing_runs_twice(
        source: object) -> None:
    data = range(100_000) if source is range else source(range(100_000))  # type: ignore[operator]
    cursor = InputCursor(data, 0)
    taken = cursor.take(len(data), as_list=False)
    assert taken is not None
    # Planned at 1 us per item: the pace (2 us, then what the first 10 items took)
    # is left behind within milliseconds of item 50; the budget is 0.5 s at most.
    report = run_task(dear_after_50, 0, 0, taken[1], budget=0.5, step=10, portable=False,
                      exact=False, pace=2e-6)
    assert report.error is None and report.stopped_early
    assert 50 <= report.done < len(data)
    assert report.results == [x * 2 for x in range(report.done)]


def test_items_a_task_in_the_caller_did_not_get_to_are_handed_out_again_without_a_copy(
        ) -> None:
    from amorsize.dispatch import TaskFlow
    from amorsize.worker import ChunkReport

    data = list(range(1000))
    flow = TaskFlow(InputCursor(data, 0), window=4)
    taken = flow.cursor.take(1000, as_list=False)
    assert taken is not None
    start, items = taken
    report = ChunkReport(chunk_id=0, item_count=1000, done=300, results=data[:300],
                         wall_start=0.0, wall_end=0.0, duration=0.0, cpu_seconds=0.0,
                         run_delay=0.0, pid=0, worker_key="", worker_started_at=0.0,
                         stopped_early=True)
    report.start_index = start
    flow.accept(report, items)
    assert not flow.cursor.given_back and flow.cursor.position == 300
    again = flow.cursor.take(10, as_list=False)
    assert again is not None and again[0] == 300 and list(again[1]) == data[300:310]
    assert list(flow.results()) == [data[:300]]


@pytest.mark.timeout(60)
def test_a_child_forked_while_the_watchdog_held_its_lock_still_runs_watched_tasks() -> None:
    """A program that forks (a multiprocessing fork pool calling amorsize in its
    workers) may fork while the watchdog thread holds its lock: the child must not
    inherit a lock nobody will release."""
    import os
    import signal

    from amorsize.watchdog import watchdog

    reader = iter(list(range(10)))
    warm = Watch(reader, end=10, rule=StopRule(started=time.perf_counter(), budget=60.0,
                                               pace=0.0, step=1, slack=0.02), interval=0.005)
    watchdog.watch(warm)  # the thread exists and registered the fork hook
    watchdog.release(warm)
    with watchdog._condition:  # held at the fork, as the thread may hold it
        pid = os.fork()
        if pid == 0:  # the child: a watched serial task, then leave at once
            try:
                taken = InputCursor(list(range(5000)), 0).take(5000, as_list=False)
                assert taken is not None
                report = run_task(dear_after_50, 0, 0, taken[1], budget=0.05, step=10,
                                  portable=False, exact=False, pace=2e-6)
                os._exit(0 if report.stopped_early and report.error is None else 1)
            except BaseException:
                os._exit(2)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the watchdog's inherited lock")
        time.sleep(0.05)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_watch_never_calibrates_its_pace_below_its_floor() -> None:
    reader = iter(list(range(100)))
    watch = Watch(reader, end=100, rule=StopRule(started=0.0, budget=10.0, pace=0.004,
                                                 step=10, slack=0.02, pace_floor=0.003),
                  interval=0.005)
    advance(reader, 10)
    assert not watch.late(0.010)  # 1 ms per item: min(4 ms, 2 x 1 ms) = 2 ms, floor 3 ms
    assert watch.rule.pace == pytest.approx(0.003)
    advance(reader, 1)  # behind at 10 ms + 20 ms slack + 3 ms for the 11th item
    assert not watch.late(0.0325)
    assert watch.late(0.0335)


def test_the_watchdog_looks_again_when_the_task_could_first_be_late() -> None:
    """Each look takes the GIL from the task's thread: after calibration the watchdog
    sleeps until the task could be behind its pace, not a fixed interval."""
    reader = iter(list(range(1000)))
    watch = Watch(reader, end=1000, rule=StopRule(started=0.0, budget=10.0, pace=0.004,
                                                  step=10, slack=0.02), interval=0.005)
    assert watch.next_look(0.0) == pytest.approx(0.005)  # not calibrated: the interval
    advance(reader, 10)
    assert not watch.late(0.010)  # calibrated: pace 2 ms, behind at 30 ms + 2 ms an item
    assert watch.next_look(0.010) == pytest.approx(0.030)
    advance(reader, 100)  # well ahead: the next look is 200 ms further on
    assert watch.next_look(0.040) == pytest.approx(0.230)
    assert watch.next_look(0.229) == pytest.approx(0.234)  # never sooner than 5 ms on
    budget_only = Watch(iter(list(range(10))), end=10, interval=0.005,
                        rule=StopRule(started=0.0, budget=1.0, pace=0.0, step=1, slack=0.02))
    assert budget_only.next_look(0.1) == pytest.approx(1.0)
