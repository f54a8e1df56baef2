"""The run-time policy, fed report sequences: no real clock, no pool.

A small simulator hands out tasks the way a run does (`TaskSizer.next_size`), makes
the report a worker would send for items whose true cost is a function of their
input position (rising, falling, a step, noise, a busy machine), honours the task's
time budget the way `worker.run_task` does (slices of about budget / 8, stop after
the slice that reaches the budget), and feeds the report back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from amorsize import costmodel, policy
from amorsize.watchdog import calibrated_pace
from amorsize.worker import PER_ITEM_CHECK_STEP, SLICES_PER_BUDGET, ChunkReport

TARGET = 0.2
MACHINE = costmodel.MachineCosts(cores=2, available_memory=8 << 30, process_start=0.006,
                                 process_task=0.0003, ipc_seconds_per_byte=2e-9)


def report(start: int, done: int, seconds: float, *, cpu_share: float = 1.0,
           run_delay: float = 0.0, stopped_early: bool = False) -> ChunkReport:
    """The report of a task of `done` items that took `seconds` in the worker."""
    computing = (seconds - run_delay) * cpu_share
    return ChunkReport(chunk_id=0, item_count=done, done=done, results=[], wall_start=0.0,
                       wall_end=seconds, duration=seconds, cpu_seconds=computing,
                       run_delay=run_delay, pid=1, worker_key="pid:1", worker_started_at=0.0,
                       stopped_early=stopped_early, start_index=start)


@dataclass
class Task:
    start: int
    sent: int
    done: int
    cost: float  # simulated seconds: the items' own costs, no clock


def simulate(cost: Callable[[int], float], total: int, workers: int = 2,
             known_total: bool = True) -> list[Task]:
    """Run `total` items through the sizer; return every task as the worker ran it."""
    costs = policy.ItemCosts()
    sizer = policy.TaskSizer(target_chunk_duration=TARGET, workers=workers,
                             task_overhead=MACHINE.process_task,
                             total_items=total if known_total else None, fixed_chunksize=None)
    tasks: list[Task] = []
    position = 0
    given_back: list[tuple[int, int]] = []
    while position < total or given_back:
        if given_back:  # handed out again first, no larger than a task (as the cursor does)
            start, size = given_back.pop(0)
            wanted = sizer.next_size(costs, position)
            if size > wanted:
                given_back.insert(0, (start + wanted, size - wanted))
                size = wanted
        else:
            start = position
            size = min(sizer.next_size(costs, position), total - position)
            position += size
        budget = sizer.budget_for(size, costs)
        done, seconds = _run(cost, start, size, budget, sizer.first_step(costs, budget))
        tasks.append(Task(start, size, done, seconds))
        costs.add(report(start, done, seconds, stopped_early=done < size), "process")
        if done < size:
            given_back.append((start + done, size - done))
    return tasks


def _run(cost: Callable[[int], float], start: int, size: int, budget: float,
         step: int) -> tuple[int, float]:
    """What worker._run_slices does with these items: stop past the budget, looking at
    the clock after every item, or after every slice for cheap items."""
    done, elapsed = 0, 0.0
    if budget and step <= PER_ITEM_CHECK_STEP:
        while done < size and elapsed < budget:
            elapsed += cost(start + done)
            done += 1
        return done, elapsed
    while done < size:
        part = min(step, size - done)
        took = sum(cost(start + done + k) for k in range(part))
        done += part
        elapsed += took
        if budget and elapsed >= budget:
            break
        grown = 4 * part
        step = max(1, min(grown, int(part * budget / SLICES_PER_BUDGET / took))) \
            if took > 0 and budget else grown
    return done, elapsed


def after_warmup(tasks: list[Task], seconds: float = 1.0) -> list[Task]:
    """The tasks that started after `seconds` of work (the issue's 'after the first
    second')."""
    clock, later = 0.0, []
    for task in tasks:
        if clock >= seconds:
            later.append(task)
        clock += task.cost / 2  # two workers share the work
    return later


def test_rising_cost_keeps_tasks_near_the_target() -> None:
    tasks = simulate(lambda i: 20e-6 + i * 0.3e-6, 6000)  # 20 us up to ~1.8 ms
    assert sum(t.done for t in tasks) == 6000
    later = after_warmup(tasks)
    assert later
    assert max(t.cost for t in later) <= 2 * TARGET


def test_falling_cost_grows_the_tasks_instead_of_paying_overhead() -> None:
    tasks = simulate(lambda i: max(2e-6, 2e-3 - i * 0.2e-6), 10_000)
    assert sum(t.done for t in tasks) == 10_000
    middle = [t for t in after_warmup(tasks) if t.start < 8_000]
    assert middle
    assert max(t.cost for t in middle) <= 2 * TARGET
    assert min(t.cost for t in middle) >= TARGET / 8  # not tiny tasks all along


def test_a_step_up_in_cost_is_cut_by_the_time_budget() -> None:
    tasks = simulate(lambda i: 10e-6 if i < 30_000 else 2e-3, 31_000)
    assert sum(t.done for t in tasks) == 31_000
    assert max(t.cost for t in tasks) <= 2 * TARGET
    assert any(t.done < t.sent for t in tasks)  # the step was met inside a task


def test_noisy_items_do_not_make_the_size_swing() -> None:
    rng = random.Random(5)
    noise = [100e-6 * (50 if rng.random() < 0.02 else 1) for _ in range(40_000)]
    tasks = simulate(noise.__getitem__, 40_000)
    steady = [t for t in after_warmup(tasks) if t.start < 30_000]
    sizes = [t.sent for t in steady]
    assert max(sizes) <= 4 * min(sizes)


def test_tasks_shrink_near_the_end_so_workers_finish_together() -> None:
    tasks = simulate(lambda i: 1e-3, 2_000)
    tail = tasks[-4:]
    assert all(t.cost < TARGET / 2 for t in tail)
    assert tasks[len(tasks) // 2].sent > tail[-1].sent


def test_unknown_total_still_sizes_tasks_by_time() -> None:
    tasks = simulate(lambda i: 50e-6, 20_000, known_total=False)
    assert sum(t.done for t in tasks) == 20_000
    assert max(t.cost for t in after_warmup(tasks, 0.2)) <= 2 * TARGET


def test_a_fixed_chunksize_is_kept_and_never_cut() -> None:
    sizer = policy.TaskSizer(target_chunk_duration=TARGET, workers=2, task_overhead=0.0003,
                             total_items=100, fixed_chunksize=7)
    costs = policy.ItemCosts()
    costs.add(report(0, 7, 10.0), "process")
    assert sizer.next_size(costs, 7) == 7
    assert sizer.budget == 0.0


def test_a_serial_task_over_items_read_in_place_takes_the_rest_stopped_at_planned_time(
        ) -> None:
    sizer = policy.TaskSizer(target_chunk_duration=1.0, workers=1, task_overhead=0.0,
                             total_items=10_000_000, fixed_chunksize=None)
    costs = policy.ItemCosts()
    assert sizer.serial_task(costs, 0, 10_000_000)[0] == 1  # no estimate yet: one item
    costs.add(report(0, 100, 1e-4), "serial")  # 1 us an item: tasks of 1M items plan 1 s
    planned = sizer.next_size(costs, 100)
    size, budget = sizer.serial_task(costs, 100, 9_999_900)
    assert planned < size == 9_999_900 and budget == pytest.approx(planned * 1e-6)
    # Items that cannot be read in place are cut at the planned count as before.
    assert sizer.serial_task(costs, 100, None) == (planned, sizer.budget_for(planned, costs))
    fixed = policy.TaskSizer(target_chunk_duration=1.0, workers=1, task_overhead=0.0,
                             total_items=10_000_000, fixed_chunksize=10)
    assert fixed.serial_task(costs, 100, 9_999_900) == (10, 0.0)


def test_a_pool_tasks_first_slice_may_tighten_its_pace_only_until_the_workers_measured(
        ) -> None:
    """Items of varying cost: a first slice of only cheap ones would set a pace under
    the mean cost, and the task would stop at an ordinary stretch."""
    sizer = policy.TaskSizer(target_chunk_duration=TARGET, workers=2, task_overhead=0.0003,
                             total_items=None, fixed_chunksize=None)
    costs = policy.ItemCosts()
    costs.add(report(0, 100, 0.01), "process")  # probes from cold workers
    assert sizer.pool_pace_floor(costs) == 0.0
    for task in range(1, policy.MIN_EVIDENCE_TASKS * 2):
        costs.add(report(100 * task, 100, 0.01), "process")
    assert sizer.pool_pace_floor(costs) == sizer.pace(costs) > 0
    # Where the pace comes into force (watchdog.calibrated_pace): a first slice at a
    # quarter of the mean cost leaves it as planned.
    pace = sizer.pace(costs)
    assert calibrated_pace(pace, 0.25 * 1e-4 * 50, 50, sizer.pool_pace_floor(costs)) == pace
    assert calibrated_pace(pace, 0.25 * 1e-4 * 50, 50, 0.0) < pace


def test_the_first_tasks_are_small_probes_until_the_workers_measured() -> None:
    sizer = policy.TaskSizer(target_chunk_duration=TARGET, workers=2, task_overhead=0.0003,
                             total_items=None, fixed_chunksize=None)
    costs = policy.ItemCosts()
    assert sizer.next_size(costs, 0) == 1
    costs.add(report(0, 1, 1e-5), "process")
    # The first measured estimate: a quarter of the target, not a whole one.
    assert sizer.next_size(costs, 1) * 1e-5 <= TARGET / 4


def test_a_busy_machine_is_not_taken_for_a_waiting_function() -> None:
    costs = policy.ItemCosts()
    for k in range(8):  # half of every task spent runnable, waiting for a CPU
        costs.add(report(k * 100, 100, 0.2, cpu_share=1.0, run_delay=0.1), "process")
    share = costs.cpu_share()
    assert share is not None and share > 0.9
    assert policy.review_executor("process", 2, costs, 10_000, MACHINE, TARGET, 1.1) is None


def test_a_waiting_function_in_processes_moves_to_threads() -> None:
    costs = policy.ItemCosts()
    for k in range(8):
        costs.add(report(k * 10, 10, 0.02, cpu_share=0.02), "process")
    plan = policy.review_executor("process", 2, costs, 5_000, MACHINE, TARGET, 1.1)
    assert plan is not None and plan.executor_type == "thread" and plan.n_jobs > 2


def test_a_computing_function_saturating_the_gil_moves_to_processes() -> None:
    costs = policy.ItemCosts(gil=True)
    for k in range(16):  # 4 threads, each computing a quarter of the time: GIL-bound
        start = k * 0.05
        costs.add(ChunkReport(chunk_id=k, item_count=50, done=50, results=[],
                              wall_start=start, wall_end=start + 0.2, duration=0.2,
                              cpu_seconds=0.05, run_delay=0.0, pid=1, worker_key=f"t{k % 4}",
                              worker_started_at=0.0, start_index=k * 50), "thread")
    costs.prior = costmodel.Workload(items=1, item_seconds=1e-3, cpu_share=1.0)
    assert (costs.gil_load() or 0) >= policy.GIL_SATURATED
    plan = policy.review_executor("thread", 4, costs, 20_000, MACHINE, TARGET, 1.1)
    assert plan is not None and plan.executor_type == "process"


def test_without_the_gil_threads_are_not_moved() -> None:
    free = costmodel.MachineCosts(cores=2, available_memory=8 << 30, process_start=0.006,
                                  process_task=0.0003, ipc_seconds_per_byte=2e-9, gil=False)
    costs = policy.ItemCosts(gil=False)
    for k in range(16):
        costs.add(report(k * 50, 50, 0.05), "thread")
    assert policy.review_executor("thread", 2, costs, 20_000, free, TARGET, 1.1) is None


def test_serial_moves_to_a_pool_when_the_items_turn_dear() -> None:
    costs = policy.ItemCosts()
    costs.add(report(0, 1000, 0.001), "serial")  # 1 us per item: serial is right
    assert policy.review_executor("serial", 1, costs, 1000, MACHINE, TARGET, 1.1) is None
    costs.add(report(1000, 100, 0.2), "serial")  # now 2 ms per item
    plan = policy.review_executor("serial", 1, costs, 5_000, MACHINE, TARGET, 1.1)
    assert plan is not None and plan.executor_type == "process"


def test_the_revised_estimate_converges_on_what_the_run_achieves() -> None:
    costs = policy.ItemCosts()
    per_item, workers, total = 1e-3, 2, 4_000
    done, elapsed = 0, 0.05
    while done < total * 0.9:
        costs.add(report(done, 200, 200 * per_item), "process")
        done += 200
        elapsed += 200 * per_item / workers
    estimate = policy.revised_estimate(costs, elapsed, total - done, workers, "process",
                                       MACHINE, TARGET)
    achieved = total * per_item / (elapsed + (total - done) * per_item / workers)
    assert estimate is not None
    assert math.isclose(estimate, achieved, rel_tol=0.25)


@pytest.mark.parametrize("values,expected", [([1.0], 1.0), ([1.0, 3.0], 3.0)])
def test_the_estimate_at_the_frontier_follows_the_furthest_task(
        values: list[float], expected: float) -> None:
    costs = policy.ItemCosts()
    for k, value in enumerate(values):
        costs.add(report(k * 10, 10, 10 * value), "process")
    assert costs.per_item() == pytest.approx(expected)


def test_a_serial_task_may_slow_down_to_where_a_pool_would_pay_before_it_stops() -> None:
    """SerialPaceFloor: the review's own threshold; worked out again only when the items
    left have halved."""
    costs = policy.ItemCosts()
    # The dry run's figures: pickling an item and its result costs 1 us each way.
    costs.prior = costmodel.Workload(items=1, item_seconds=1e-7, parent_ipc_seconds=1e-6,
                                     worker_ipc_seconds=1e-6)
    costs.add(report(0, 100_000, 0.01), "serial")  # 0.1 us per item
    floor = policy.SerialPaceFloor(TARGET, 1.1)
    first = floor.floor(costs, 1_000_000, MACHINE)
    assert first > 10 * costs.per_item()  # a stretch 2x slower is no reason to stop
    plan_at_floor = policy.ItemCosts()
    plan_at_floor.prior = costs.prior
    plan_at_floor.add(report(0, 1000, 1000 * first * 1.01), "serial")
    plan = policy.review_executor("serial", 1, plan_at_floor, 1_000_000, MACHINE, TARGET, 1.1)
    assert plan is not None  # at the floor, the review would move to a pool
    assert floor.floor(costs, 600_000, MACHINE) == first  # not halved: kept
    fewer = floor.floor(costs, 1_000, MACHINE)  # fewer items left: a pool pays later
    assert fewer > first
    assert policy.SerialPaceFloor(TARGET, 1.1).floor(policy.ItemCosts(), 10, MACHINE) == 0.0


def test_a_move_from_serial_to_threads_says_how_much_the_function_waits() -> None:
    from amorsize.revision import move_reason

    threads = costmodel.Plan("thread", 8, 100, 1.0)
    processes = costmodel.Plan("process", 2, 100, 1.0)
    assert move_reason("serial", threads, 0.3) == (
        "moved to 8 threads: the items turned out dear enough for a pool, and the "
        "function waits 70% of its time")
    assert move_reason("serial", processes, 1.0) == (
        "moved to 2 processes: the items turned out dear enough for a pool")
