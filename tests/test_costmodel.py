"""The cost model, with synthetic figures: no clock, no machine."""

from __future__ import annotations

import pytest

from amorsize import costmodel
from amorsize.costmodel import MachineCosts, Workload

MACHINE = MachineCosts(cores=4, available_memory=16 << 30, process_start=0.01,
                       process_task=0.0003, ipc_seconds_per_byte=2e-9)


def test_one_speedup_definition() -> None:
    assert costmodel.speedup(10.0, 1.0, 4.0) == pytest.approx(2.0)
    assert costmodel.speedup(10.0, 0.0, 0.0) == 1.0


def test_serial_is_the_items_own_time() -> None:
    assert costmodel.predict_serial(Workload(items=1000, item_seconds=0.002)) == \
        pytest.approx(2.0)


def test_processes_divide_computing_work_up_to_the_cores() -> None:
    w = Workload(items=10_000, item_seconds=1e-3)
    times = {n: costmodel.predict_process(w, n, 100, MACHINE) for n in (1, 2, 4, 8)}
    assert times[1] > times[2] > times[4]
    assert times[8] >= times[4] * 0.99  # beyond the cores: no better for computing work
    assert times[4] >= costmodel.predict_serial(w) / MACHINE.cores


def test_processes_are_bound_by_the_parents_pickling() -> None:
    w = Workload(items=10_000, item_seconds=1e-4, parent_ipc_seconds=2e-4)
    two = costmodel.predict_process(w, 2, 100, MACHINE)
    four = costmodel.predict_process(w, 4, 100, MACHINE)
    assert four == pytest.approx(two, rel=0.05)
    assert two >= w.items * w.parent_ipc_seconds


def test_many_tiny_tasks_cost_more_than_a_few() -> None:
    w = Workload(items=10_000, item_seconds=1e-4)
    assert costmodel.predict_process(w, 2, 1, MACHINE) > \
        costmodel.predict_process(w, 2, 1000, MACHINE)


def test_threads_with_the_gil_do_not_speed_up_computing() -> None:
    w = Workload(items=1000, item_seconds=1e-3, cpu_share=1.0)
    assert costmodel.predict_thread(w, 8, 50, MACHINE) >= costmodel.predict_serial(w)


def test_threads_overlap_waiting() -> None:
    w = Workload(items=1000, item_seconds=2e-3, cpu_share=0.02)
    assert costmodel.predict_thread(w, 32, 10, MACHINE) < costmodel.predict_serial(w) / 10


def test_without_the_gil_threads_compute_side_by_side() -> None:
    free = MachineCosts(cores=4, available_memory=16 << 30, process_start=0.01,
                        process_task=0.0003, ipc_seconds_per_byte=2e-9, gil=False)
    w = Workload(items=10_000, item_seconds=1e-3, cpu_share=1.0)
    assert costmodel.predict_thread(w, 4, 100, free) < costmodel.predict_serial(w) / 3
    plan = costmodel.best_plan(w, free, costmodel.EXECUTOR_TYPES)
    assert plan.executor_type == "thread"  # no pickling, no process start
    assert plan.n_jobs == free.cores  # more threads than cores compute no faster
    waits = Workload(items=10_000, item_seconds=1e-3, cpu_share=0.1)
    assert costmodel.best_plan(waits, free, costmodel.EXECUTOR_TYPES).n_jobs > free.cores


def test_task_size_aims_at_the_target_within_bounds() -> None:
    w = Workload(items=100_000, item_seconds=1e-4)
    assert costmodel.chunk_for(w, "process", 4, 0.2, MACHINE) == 2000
    few = Workload(items=100, item_seconds=1e-4)
    assert costmodel.chunk_for(few, "process", 4, 0.2, MACHINE) == 25  # an even split
    cheap = Workload(items=10**7, item_seconds=1e-8)
    size = costmodel.chunk_for(cheap, "process", 4, 1e-6, MACHINE)
    assert size * 1e-8 >= costmodel.MIN_TASK_OVERHEAD_RATIO * MACHINE.process_task * 0.99


def test_best_plan_refuses_parallel_below_min_speedup() -> None:
    w = Workload(items=100, item_seconds=1e-3)
    plan = costmodel.best_plan(w, MACHINE, costmodel.EXECUTOR_TYPES)
    assert plan.executor_type == "process"
    speedup = costmodel.predict_serial(w) / plan.seconds
    assert costmodel.best_plan(w, MACHINE, costmodel.EXECUTOR_TYPES,
                               min_speedup=speedup * 1.01).executor_type == "serial"
    # Time already spent counts on both sides: the same plan passes a lower bar.
    assert costmodel.best_plan(w, MACHINE, costmodel.EXECUTOR_TYPES, min_speedup=1.1,
                               spent_seconds=0.001).executor_type == "process"


def test_ties_go_to_fewer_workers_and_items_bound_the_workers() -> None:
    w = Workload(items=3, item_seconds=1.0)
    plan = costmodel.best_plan(w, MACHINE, ["process"])
    assert plan.n_jobs <= 3


def test_memory_rules_out_plans_that_would_not_fit() -> None:
    tight = MachineCosts(cores=8, available_memory=200 << 20, process_start=0.01,
                         process_task=0.0003, ipc_seconds_per_byte=2e-9)
    w = Workload(items=10_000, item_seconds=1e-3, peak_memory=100 << 20)
    plan = costmodel.best_plan(w, tight, ["process"])
    assert plan.n_jobs <= costmodel.memory_cap(w, plan.chunksize, tight.available_memory)


def test_a_fixed_worker_count_is_the_only_one_predicted() -> None:
    w = Workload(items=1000, item_seconds=1e-3)
    plans = costmodel.candidates(w, MACHINE, ["thread", "process"], 3, 0.2)
    assert {p.n_jobs for p in plans} == {3}


def test_the_item_cost_from_which_a_pool_pays_divides_serial_from_pool_plans() -> None:
    """pool_pays_from: below it best_plan stays serial, from it a pool is chosen."""
    w = Workload(items=100_000, item_seconds=1e-7, parent_ipc_seconds=1e-6,
                 worker_ipc_seconds=1e-6)
    threshold = costmodel.pool_pays_from(w, MACHINE, 0.2, 1.1)
    assert w.item_seconds < threshold < 1.0

    def plan_at(item_seconds: float) -> str:
        at = Workload(items=w.items, item_seconds=item_seconds,
                      parent_ipc_seconds=w.parent_ipc_seconds,
                      worker_ipc_seconds=w.worker_ipc_seconds)
        return costmodel.best_plan(at, MACHINE, costmodel.EXECUTOR_TYPES, None, 0.2,
                                   1.1).executor_type

    assert plan_at(threshold / 1.3) == "serial"
    assert plan_at(threshold) != "serial"
    # Already dear enough: the items' own cost; never worth it: the ceiling.
    dear = Workload(items=100_000, item_seconds=0.01)
    assert costmodel.pool_pays_from(dear, MACHINE, 0.2, 1.1) == pytest.approx(0.01)
    two = Workload(items=1, item_seconds=1e-6)
    assert costmodel.pool_pays_from(two, MACHINE, 0.2, 1.1, ceiling=0.5) == 0.5
