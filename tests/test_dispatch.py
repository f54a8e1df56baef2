"""The mechanism: handing out the input, results in order, items handed back."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from amorsize import policy, pools
from amorsize.arguments import RunOptions
from amorsize.dispatch import InputCursor, TaskFlow
from amorsize.hooks import RunHooks
from amorsize.input_slice import InputSlice
from amorsize.lanes import Lane
from amorsize.publisher import RunIdentity, RunPublisher
from amorsize.run import Run
from amorsize.worker import _Progress, _run_slices, run_task


class Recorder(Executor):
    """An executor that keeps what it was given and runs nothing (futures stay pending)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Any, ...]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append(args)
        return Future()


class Inline(Executor):
    """Runs each task at once, in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_a_list_or_range_is_handed_out_in_slices_and_an_iterator_in_lists() -> None:
    cursor = InputCursor(range(10), 2)
    taken = cursor.take(3, as_list=False)
    assert taken is not None and taken[0] == 2 and list(taken[1]) == [2, 3, 4]
    assert cursor.take(3) == (5, [5, 6, 7])
    assert cursor.take(5) == (8, [8, 9]) and cursor.exhausted
    assert cursor.take(1) is None and cursor.empty
    stream = InputCursor(iter([]), 0, rest=iter("abc"))
    assert stream.take(2) == (0, ["a", "b"]) and stream.take(2) == (2, ["c"])


def test_handed_back_items_go_out_first_and_are_split_to_size() -> None:
    cursor = InputCursor(list(range(20)), 0)
    cursor.take(10)
    cursor.give_back(4, [4, 5, 6, 7, 8, 9])
    assert cursor.handed_out == 4
    assert cursor.take(4) == (4, [4, 5, 6, 7])
    assert cursor.take(4) == (8, [8, 9])
    assert cursor.take(4) == (10, [10, 11, 12, 13])


def test_results_come_back_in_input_order_whatever_order_tasks_finish() -> None:
    flow = TaskFlow(InputCursor(list(range(9)), 0), window=10)
    pool = pools.external_pool(Inline(), 3)
    while flow.submit(pool, abs, 3, 0.0, 1, True):
        pass
    reports = flow.collect()
    assert sorted(r.start_index for r in reports) == [0, 3, 6]
    assert [x for part in flow.results() for x in part] == list(range(9))
    assert flow.done


def test_a_task_stopped_early_gives_its_rest_back() -> None:
    flow = TaskFlow(InputCursor(list(range(6)), 0), window=10)
    report = run_task(abs, 0, flow.next_chunk_id(), [0, 1, 2, 3], portable=False)
    report.done, report.results, report.stopped_early = 2, [0, 1], True
    flow.accept(report, [0, 1, 2, 3])
    assert list(flow.cursor.given_back) == [(2, [2, 3])]
    assert list(flow.results()) == [[0, 1]]


def test_items_handed_back_go_out_even_when_waiting_results_fill_the_window() -> None:
    # Found by the benchmark: a task stopped early, the tasks after it finished and
    # filled the window with results that wait for exactly the items handed back.
    run = Run(abs, range(100), RunHooks(), RunOptions(executor=Recorder()))
    recorder = Recorder()
    lane = Lane("external", 2, pools.external_pool(recorder, 2), abs)
    flow = TaskFlow(InputCursor(list(range(100)), 0), window=4)
    flow.cursor.take(40)
    flow.cursor.give_back(10, list(range(10, 20)))
    for start in (20, 25, 30, 35):
        flow.ready[start] = list(range(start, start + 5))
    flow.next_index = 10
    assert not flow.has_room
    sizer = policy.TaskSizer(target_chunk_duration=0.2, workers=2, task_overhead=0.0,
                             total_items=100, fixed_chunksize=10)
    publisher = RunPublisher(RunHooks(), RunIdentity("x", "f", 0.0, 0.0), total_items=100)
    run._submit(lane, flow, sizer, 100, publisher)
    assert recorder.submitted and recorder.submitted[0][3] == list(range(10, 20))


def test_a_task_in_the_caller_reads_a_list_in_place_and_behaves_as_a_sequence() -> None:
    data = list(range(100))
    cursor = InputCursor(data, 5)
    taken = cursor.take(10, as_list=False)
    assert taken is not None
    start, part = taken
    assert start == 5 and isinstance(part, InputSlice) and part.data is data
    assert len(part) == 10 and list(part) == data[5:15]
    assert part[0] == 5 and part[-1] == 14 and part[3:] == data[8:15]
    with pytest.raises(IndexError):
        part[10]
    assert list(itertools.islice(part.reader(), 3)) == [5, 6, 7]
    rest = cursor.take(200, as_list=False)
    assert rest is not None and rest[1][:] == data[15:] and cursor.exhausted


@pytest.mark.parametrize("source", [tuple, range])
def test_a_tuple_or_range_is_read_in_place_from_where_the_task_starts(source: Any) -> None:
    data = range(10, 110) if source is range else source(range(10, 110))
    taken = InputCursor(data, 40).take(10, as_list=False)
    assert taken is not None and isinstance(taken[1], InputSlice)
    assert list(taken[1]) == list(range(50, 60))
    reader = taken[1].reader()
    assert operator.length_hint(reader) == 60 and next(reader) == 50


class TaggedList(list):  # type: ignore[type-arg]
    """A list subclass whose own __iter__ need not be positionable."""

    def __iter__(self) -> Any:
        return (x for x in super().__iter__())


def test_a_list_subclass_is_copied_not_read_in_place() -> None:
    taken = InputCursor(TaggedList(range(100)), 5).take(10, as_list=False)
    assert taken is not None and not isinstance(taken[1], InputSlice)
    assert list(taken[1]) == list(range(5, 15))


def fail_on_2500(x: int) -> int:
    if x == 2500:
        raise ValueError("bad item")
    return x


@pytest.mark.parametrize("source", [list, tuple, range])
@pytest.mark.parametrize(("step", "kept"), [(100, 2500), (2001, 2001)])
def test_a_task_run_in_slices_names_the_failing_item(source: Any, step: int, kept: int) -> None:
    """Item by item (step <= PER_ITEM_CHECK_STEP) every result before the failure is
    kept; in comprehension slices, those of the slices before the failing one."""
    # 3000 of 4000 items: a task that ends before the input does runs in slices.
    data = range(4000) if source is range else source(range(4000))
    taken = InputCursor(data, 0).take(3000, as_list=False)
    assert taken is not None
    items = taken[1]
    # A budget never reached: only the slicing is exercised.
    report = run_task(fail_on_2500, 0, 0, items, budget=3600.0, step=step, portable=False,
                      exact=False)
    assert isinstance(report.error, ValueError)
    assert report.error_index == 2500
    assert report.done == kept and report.results == []


class StepClock:
    """A fake clock the function advances by each item's cost: 1 ms for the first
    `cheap` items, then 50 ms (a 50x step inside one task)."""

    def __init__(self, cheap: int) -> None:
        self.now = 0.0
        self.cheap = cheap

    def __call__(self) -> float:
        return self.now

    def item(self, x: int) -> int:
        self.now += 0.001 if x < self.cheap else 0.050
        return x


@pytest.mark.parametrize("planned", [0.002, 0.020])
def test_a_task_whose_items_turn_dear_stops_at_its_pace_not_at_its_budget(planned: float
                                                                           ) -> None:
    """Pace: twice the planned cost per item, at most twice what the first `step`
    items took (so a planned cost 10x too high, as measured in cold workers, still
    catches the step). The step at item 100 is seen two items later."""
    clock = StepClock(cheap=100)
    progress = _Progress()
    done = _run_slices(clock.item, list(range(1000)), budget=10.0, step=10, exact=True,
                       progress=progress, pace=2 * planned, clock=clock)
    # After 10 items (10 ms): pace 2 ms, behind at 10 + 20 ms slack + 2 ms per item;
    # items 100, 101 and 102 end at 150, 200 and 250 ms, behind 212, 214 and 216 ms.
    assert done == 103 and progress.results == list(range(103))


def test_a_pace_floor_keeps_a_slowed_task_running_until_the_items_cost_more() -> None:
    """A serial task's pace never calibrates below its floor (the cost from which a
    pool would pay): 10x slower items under a 20 ms floor run on; dearer ones stop."""
    clock = StepClock(cheap=100)  # 1 ms, then 50 ms items
    progress = _Progress()
    done = _run_slices(clock.item, list(range(300)), budget=10.0, step=10, exact=True,
                       progress=progress, pace=0.004, clock=clock, pace_floor=0.1)
    # 50 ms items under a 100 ms floor: only the budget stops it (100 + 198 items in 10 s)
    assert done == 298 and clock.now >= 10.0
    clock = StepClock(cheap=100)
    progress = _Progress()
    done = _run_slices(clock.item, list(range(300)), budget=10.0, step=10, exact=True,
                       progress=progress, pace=0.004, clock=clock, pace_floor=0.02)
    # Behind at 10 ms + 20 ms slack + 20 ms per item from the 10th (1.85 s at item 100,
    # which ends at 0.1 s); each 50 ms item falls 30 ms further behind: 59 items on.
    assert done == 159 and progress.results == list(range(159))


def test_without_a_pace_a_task_runs_to_its_budget() -> None:
    clock = StepClock(cheap=100)
    progress = _Progress()
    done = _run_slices(clock.item, list(range(1000)), budget=10.0, step=10, exact=True,
                       progress=progress, pace=0.0, clock=clock)
    # 100 cheap items (0.1 s), then 50 ms items until the clock reaches 10 s.
    assert done == 100 + 198 and clock.now >= 10.0


@pytest.mark.parametrize("source", [list, tuple, range])
def test_a_cheap_task_to_the_end_of_a_list_runs_watched_and_names_the_failing_item(
        source: Any) -> None:
    """To the end of the caller's list: one comprehension (its results are lost with
    the failure, as a failing slice's are), the failing item found all the same."""
    data = range(3000) if source is range else source(range(3000))
    taken = InputCursor(data, 0).take(3000, as_list=False)
    assert taken is not None and taken[1].stop == 3000
    report = run_task(fail_on_2500, 0, 0, taken[1], budget=3600.0, step=100,
                      portable=False, exact=False, pace=1.0)
    assert isinstance(report.error, ValueError)
    assert report.error_index == 2500 and report.done == 0
