"""optimize(): decisions, fixed settings, bad input, pickling fallbacks, one-shot inputs."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

from amorsize import execute, optimize, system
from amorsize.optimizer import (
    CHUNK_TIME_SPREAD,
    OptimizationResult,
    Workload,
    _tail,
    predict_process,
    processes_look_likely,
)
from amorsize.sampling import ItemMeasurement
from tests.workloads import Boom, heavy, nap, raise_on_13, square


def counting(n: int, read: list[int]) -> Iterator[int]:
    """Yield 0..n-1, recording how many were read."""
    for i in range(n):
        read[0] += 1
        yield i


# ------------------------------------------------------------------ decisions


def test_cheap_items_run_serially_with_a_reason() -> None:
    result = optimize(square, range(10_000))
    assert result.executor_type == "serial"
    assert result.n_jobs == 1
    assert result.estimated_speedup == 1.0
    assert result.reason and result.reason.endswith(".")
    assert result.chunksize >= 1


def test_heavy_cpu_items_go_to_processes() -> None:
    result = optimize(heavy, range(2_000))
    assert result.executor_type == "process", result.explain()
    assert result.n_jobs >= 2
    assert result.estimated_speedup > 1.0
    assert "process" in result.reason


def test_sleeping_items_go_to_more_threads_than_cores() -> None:
    result = optimize(nap, range(2_000))
    assert result.executor_type == "thread", result.explain()
    assert result.n_jobs > system.usable_cores()
    assert "waiting" in result.reason


@pytest.mark.parametrize(
    ("fixed", "check"),
    [
        ({"n_jobs": 2, "chunksize": 7, "executor_type": "thread"},
         {"n_jobs": 2, "chunksize": 7, "executor_type": "thread"}),
        ({"n_jobs": 2, "chunksize": 3, "executor_type": "process"},
         {"n_jobs": 2, "chunksize": 3, "executor_type": "process"}),
        ({"executor_type": "process"}, {"executor_type": "process"}),
        ({"executor_type": "thread"}, {"executor_type": "thread"}),
        ({"executor_type": "serial"}, {"executor_type": "serial", "n_jobs": 1}),
        ({"n_jobs": 3}, {"n_jobs": 3}),
        ({"n_jobs": 1}, {"n_jobs": 1, "executor_type": "serial"}),
        ({"chunksize": 5}, {"chunksize": 5}),
    ],
    ids=["all-thread", "all-process", "process", "thread", "serial", "n_jobs", "n_jobs-1",
         "chunksize"],
)
def test_fixed_settings_are_respected(fixed: dict[str, Any], check: dict[str, Any]) -> None:
    result = optimize(square, range(200), **fixed)
    for name, value in check.items():
        assert getattr(result, name) == value, result.explain()


def test_fixed_process_decision_states_its_source() -> None:
    result = optimize(square, range(200), n_jobs=2, executor_type="process")
    assert "fixed" in result.reason


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"func": 42}, TypeError, "func"),
        ({"data": 5}, TypeError, "data"),
        ({"data": None}, TypeError, "data"),
        ({"sample_size": 0}, ValueError, "sample_size"),
        ({"sample_size": -3}, ValueError, "sample_size"),
        ({"sample_size": 2.5}, TypeError, "sample_size"),
        ({"target_chunk_duration": 0}, ValueError, "target_chunk_duration"),
        ({"target_chunk_duration": -0.5}, ValueError, "target_chunk_duration"),
        ({"target_chunk_duration": float("nan")}, ValueError, "target_chunk_duration"),
        ({"target_chunk_duration": "fast"}, TypeError, "target_chunk_duration"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"n_jobs": -1}, ValueError, "n_jobs"),
        ({"n_jobs": 2.0}, TypeError, "n_jobs"),
        ({"n_jobs": True}, TypeError, "n_jobs"),
        ({"chunksize": 0}, ValueError, "chunksize"),
        ({"chunksize": "10"}, TypeError, "chunksize"),
        ({"executor_type": "gpu"}, ValueError, "executor_type"),
    ],
)
@pytest.mark.parametrize("entry", ["optimize", "execute"])
def test_bad_input_names_the_parameter(kwargs: dict[str, Any], error: type[Exception],
                                       name: str, entry: str) -> None:
    arguments: dict[str, Any] = {"func": square, "data": range(10)}
    arguments.update(kwargs)
    func, data = arguments.pop("func"), arguments.pop("data")
    target = optimize if entry == "optimize" else execute
    with pytest.raises(error, match=name):
        target(func, data, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"total_items": -1}, "total_items"),
        ({"progress_interval": -1}, "progress_interval"),
        ({"executor": "pool"}, "executor"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child"),
        ({"max_tasks_per_child": 1, "mp_context": multiprocessing.get_context("fork")},
         "max_tasks_per_child"),
        ({"mp_context": "spawn"}, "mp_context"),
        ({"hooks": 42}, "hooks"),
        ({"executor": ThreadPoolExecutor(1), "executor_type": "thread"}, "executor_type"),
    ],
    ids=["max_in_flight", "total_items", "progress_interval", "executor",
         "max_tasks_per_child", "fork-recycling", "mp_context", "hooks", "executor-twice"],
)
def test_bad_execute_options_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        execute(square, range(10), **kwargs)


def test_sampled_function_error_is_raised_by_optimize() -> None:
    with pytest.raises(Boom):
        optimize(raise_on_13, range(10, 20))


# ------------------------------------------------------------------ pickling


def test_lambda_runs_in_processes_through_cloudpickle(no_leftover_children: None) -> None:
    offset = 7
    func = lambda x: (x + offset, os.getpid())  # noqa: E731
    results, decision = execute(func, range(40), executor_type="process", n_jobs=2,
                                return_optimization_result=True)
    assert [r for r, _ in results] == [x + 7 for x in range(40)]
    assert decision.executor_type == "process"
    assert decision.use_cloudpickle
    assert any("cloudpickle" in w for w in decision.warnings)
    assert {pid for _, pid in results} - {os.getpid()}


def test_unpicklable_items_rule_out_processes_with_a_warning() -> None:
    locks = [threading.Lock() for _ in range(50)]
    result = optimize(lambda lock: heavy(1), locks)
    assert result.executor_type != "process"
    assert any("input items cannot be pickled" in w for w in result.warnings)
    results = execute(lambda lock: lock.locked(), locks)
    assert results == [False] * 50


def test_unpicklable_items_with_processes_forced_fail_at_once() -> None:
    with pytest.raises(TypeError, match="executor_type='thread'"):
        optimize(square, [threading.Lock() for _ in range(5)], executor_type="process")


def test_unpicklable_results_rule_out_processes() -> None:
    result = optimize(lambda x: threading.Lock(), range(50))
    assert result.executor_type != "process"
    assert any("results cannot be pickled" in w for w in result.warnings)


# ------------------------------------------------------------------ explain


def test_explain_shows_the_measured_figures() -> None:
    result = optimize(nap, range(200))
    text = result.explain()
    assert f"n_jobs={result.n_jobs}" in text
    assert result.reason in text
    for figure in ("mean item time (s)", "cpu time / wall time", "pickled input (bytes/item)",
                   "usable cores", "available memory (bytes)", "start method",
                   "thread task round-trip (s)", "estimated speedup"):
        assert figure in text, figure
    assert str(result) == text
    assert result.figures["sampled items"] == 5
    assert result.figures["usable cores"] == system.usable_cores()


def test_explain_lists_warnings() -> None:
    result = optimize(square, (x for x in range(100)))
    assert result.warnings
    assert all(f"warning: {w}" in result.explain() for w in result.warnings)


# ------------------------------------------------------------------ one-shot inputs


def test_generator_sampled_items_are_chained_back() -> None:
    read = [0]
    result = optimize(square, counting(50, read))
    assert read[0] == 5
    assert result.data is not None
    assert list(result.data) == list(range(50))


def test_sequence_is_passed_on_unchanged() -> None:
    data = list(range(30))
    result = optimize(square, data)
    assert result.data is data
    assert result.total_items == 30


def test_iterator_over_a_sequence_keeps_every_item() -> None:
    data = iter(list(range(30)))
    result = optimize(square, data, sample_size=3)
    assert result.data is not None
    assert list(result.data) == list(range(30))


def test_unknown_length_is_assumed_with_a_warning() -> None:
    result = optimize(square, (x for x in range(100)))
    assert result.total_items is None
    assert any("total_items" in w for w in result.warnings)


@pytest.mark.timeout(60)
def test_len_is_never_forced_on_an_unbounded_input() -> None:
    result = optimize(nap, itertools.count(), total_items=1000)
    assert result.total_items == 1000
    assert not any("no len()" in w for w in result.warnings)
    assert result.data is not None
    assert list(itertools.islice(result.data, 8)) == list(range(8))


@pytest.mark.timeout(60)
def test_unbounded_input_without_a_hint_still_decides() -> None:
    result = optimize(square, itertools.count())
    assert isinstance(result, OptimizationResult)
    assert result.data is not None
    assert next(iter(result.data)) == 0


def test_sample_size_is_respected() -> None:
    calls: list[int] = []

    def record(x: int) -> int:
        calls.append(x)
        return x

    result = optimize(record, range(100), sample_size=3)
    assert calls == [0, 1, 2]
    assert result.figures["sampled items"] == 3


# ------------------------------------------------------------------ cost model


def uniform(items: int, item_seconds: float = 0.005) -> Workload:
    return Workload(items=items, item_seconds=item_seconds, item_cv=0.0, cpu_ratio=1.0,
                    pickle_seconds=1e-6, transfer_bytes=20, peak_memory=0)


def test_tail_counts_the_worker_left_with_a_partial_chunk() -> None:
    w = uniform(155)
    spread = CHUNK_TIME_SPREAD * 0.005
    # 39, 39, 39, 38 items: loads 78 and 77 against a mean of 77.5.
    assert _tail(w, 2, 39) == pytest.approx(0.5 * 0.005 + spread * 39)
    # 15 chunks of 10 and one of 5: loads 80 and 75.
    assert _tail(w, 2, 10) == pytest.approx(2.5 * 0.005 + spread * 10)
    assert _tail(w, 1, 10) == 0.0


def test_chunks_that_split_evenly_are_predicted_faster() -> None:
    costs = system.ProcessCosts("fork", worker_start=0.005, task_roundtrip=0.0003,
                                ipc_seconds_per_byte=3e-9)
    w = uniform(155)
    assert predict_process(w, 2, 13, 2, costs) < predict_process(w, 2, 10, 2, costs)


def test_many_tiny_tasks_are_predicted_slower_than_a_few_per_worker() -> None:
    costs = system.ProcessCosts("fork", worker_start=0.005, task_roundtrip=0.0003,
                                ipc_seconds_per_byte=3e-9)
    w = uniform(6000, 70e-6)
    per_item = predict_process(w, 2, 1, 2, costs)
    few_per_worker = predict_process(w, 2, 375, 2, costs)
    assert few_per_worker < per_item
    # ...and a single chunk per worker pays the machine's spread on a whole half.
    assert few_per_worker < predict_process(w, 2, 3000, 2, costs)


def measured(wall: float, cpu: Optional[float] = None, pickling: float = 1e-6,
             result_bytes: int = 5) -> ItemMeasurement:
    return ItemMeasurement(wall_seconds=wall, cpu_seconds=wall if cpu is None else cpu,
                           input_bytes=5, input_pickle_seconds=pickling / 3,
                           result_bytes=result_bytes, result_pickle_seconds=pickling / 3,
                           result_unpickle_seconds=pickling / 3)


@pytest.mark.parametrize(("first", "total", "likely"), [
    (measured(0.005), 160, True),  # 0.8 s of computing
    (measured(75e-6), 6000, True),  # 0.45 s
    (measured(75e-6), 100, False),  # 7.5 ms: too short for a pool
    (measured(0.002, cpu=0.0001), 1000, False),  # waiting: threads, not processes
    (measured(1e-7, pickling=2e-6), 4_000_000, False),  # pickling costs more than the call
    (measured(75e-6), None, True),  # unknown length: the assumed 10,000 items
    (measured(150e-6, result_bytes=128 * 1024), 2000, False),  # the pipe costs more
])
def test_processes_look_likely_from_the_first_item(first: ItemMeasurement,
                                                   total: Optional[int], likely: bool) -> None:
    assert processes_look_likely(first, total, cores=2) is likely
    assert processes_look_likely(first, total, cores=1) is False


def test_first_execute_of_a_long_job_stops_sampling_once_its_workers_are_up(
    no_leftover_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "_process_costs", {})
    # About 0.3 s of work in all: clearly long enough to start workers early.
    results, decision = execute(heavy, range(100), n_jobs=2, sample_size=30,
                                return_optimization_result=True)
    assert results == [heavy(x) for x in range(100)]
    assert decision.executor_type == "process"
    # Workers start in well under 30 items of a few ms: the dry run stopped sooner.
    assert 2 <= decision.figures["sampled items"] < 30


def test_waiting_items_end_the_dry_run_after_one_timed_item(no_leftover_children: None) -> None:
    results, decision = execute(nap, range(50), return_optimization_result=True)
    assert results == list(range(50))
    assert decision.executor_type == "thread"
    # The first item (warm-up) and one timed item: the other three would only wait.
    assert decision.figures["sampled items"] == 2
