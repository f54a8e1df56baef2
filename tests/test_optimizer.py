"""optimize() and decide(): decisions from measured figures, fixed settings, bad input,
pickling fallbacks, one-shot inputs.

Decisions are tested with synthetic dry runs on a synthetic machine (decide() takes
both), so they do not depend on this machine's cores or load; optimize() itself is
tested for what it does with real input.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

from amorsize import costmodel, execute, optimize, system
from amorsize.optimizer import OptimizationResult, decide
from amorsize.sampling import ItemMeasurement, Sample
from tests.workloads import Boom, nap, square

MACHINE = costmodel.MachineCosts(cores=4, available_memory=16 << 30, process_start=0.006,
                                 process_task=0.0003, ipc_seconds_per_byte=2e-9)


def counting(n: int, read: list[int]) -> Iterator[int]:
    """Yield 0..n-1, recording how many were read."""
    for i in range(n):
        read[0] += 1
        yield i


def dry_run(item_seconds: float, cpu_share: float = 1.0, *, items: int = 5,
            run_delay: float = 0.0, total: Optional[int] = 10_000, picklable: bool = True,
            error: Optional[BaseException] = None) -> Sample:
    """What a dry run of `items` items like these would have measured."""
    wall = item_seconds + run_delay
    measured = [ItemMeasurement(wall_seconds=wall, cpu_seconds=item_seconds * cpu_share,
                                run_delay=run_delay, input_bytes=8, input_pickle_seconds=1e-6,
                                result_bytes=8, result_pickle_seconds=1e-6,
                                result_unpickle_seconds=1e-6) for _ in range(items)]
    return Sample(items=list(range(items)), results=list(range(items)), measurements=measured,
                  rest=iter(()), total_items=total, peak_memory_bytes=1024,
                  function_picklable=True, items_picklable=picklable, results_picklable=True,
                  wall_start=0.0, wall_end=wall * items, compute_seconds=wall * items,
                  cpu_seconds=item_seconds * cpu_share * items, run_delay=run_delay * items,
                  error=error)


def decided(sample: Sample, **options: Any) -> OptimizationResult:
    return decide(sample, machine=MACHINE, start_method="fork", **options)


# ------------------------------------------------------------------ decisions


def test_cheap_items_run_serially_with_a_reason() -> None:
    result = decided(dry_run(1e-7))
    assert (result.executor_type, result.n_jobs) == ("serial", 1)
    assert result.estimated_speedup == pytest.approx(1.0, rel=0.01)
    assert "below the 1.10x needed" in result.reason


def test_heavy_computing_items_go_to_one_process_per_core() -> None:
    result = decided(dry_run(5e-3))
    assert (result.executor_type, result.n_jobs) == ("process", MACHINE.cores)
    assert result.estimated_speedup > 2.0


def test_a_busy_machine_does_not_turn_a_computing_function_into_threads() -> None:
    # Each item waited as long for a CPU as it computed: run delay, not I/O.
    result = decided(dry_run(5e-3, run_delay=5e-3))
    assert result.executor_type == "process" and result.n_jobs <= MACHINE.cores
    assert result.estimated_speedup <= MACHINE.cores


def test_waiting_items_go_to_more_threads_than_cores() -> None:
    result = decided(dry_run(2e-3, cpu_share=0.02))
    assert result.executor_type == "thread", result.explain()
    assert result.n_jobs > MACHINE.cores
    assert "waits" in result.reason


def test_one_speedup_in_the_reason_and_the_figure() -> None:
    for sample in (dry_run(5e-3), dry_run(2e-3, cpu_share=0.02), dry_run(1e-7)):
        result = decided(sample, spent_seconds=0.01)
        shown = re.findall(r"(\d+\.\d+)x", result.reason)[0]
        assert float(shown) == pytest.approx(result.estimated_speedup, abs=0.005)
        assert result.estimated_speedup == pytest.approx(
            result.serial_seconds_estimate / result.predicted_seconds)


def test_time_spent_deciding_counts_against_parallel() -> None:
    quick = decided(dry_run(1e-3, total=100))
    slow = decided(dry_run(1e-3, total=100), spent_seconds=0.5)
    assert quick.executor_type == "process"
    assert slow.estimated_speedup < quick.estimated_speedup


def test_min_speedup_is_respected_with_the_same_figure() -> None:
    sample = dry_run(1e-3, total=200)
    plain = decided(sample)
    assert plain.executor_type == "process"
    demanding = decided(sample, min_speedup=plain.estimated_speedup * 1.5)
    assert demanding.executor_type == "serial"


def test_a_failing_sample_decides_serial_and_says_why() -> None:
    result = decided(dry_run(1e-3, error=Boom("x")))
    assert result.executor_type == "serial" and "raised" in result.reason


@pytest.mark.parametrize(
    ("fixed", "check"),
    [
        ({"n_jobs": 2, "executor_type": "thread"}, {"n_jobs": 2, "executor_type": "thread"}),
        ({"n_jobs": 2, "executor_type": "process"}, {"n_jobs": 2, "executor_type": "process"}),
        ({"executor_type": "process"}, {"executor_type": "process"}),
        ({"executor_type": "thread"}, {"executor_type": "thread"}),
        ({"executor_type": "serial"}, {"executor_type": "serial", "n_jobs": 1}),
        ({"n_jobs": 3}, {"n_jobs": 3}),
        ({"n_jobs": 1}, {"n_jobs": 1, "executor_type": "serial"}),
    ],
    ids=["all-thread", "all-process", "process", "thread", "serial", "n_jobs", "n_jobs-1"],
)
def test_fixed_settings_are_respected(fixed: dict[str, Any], check: dict[str, Any]) -> None:
    result = decided(dry_run(1e-6), **fixed)
    for name, value in check.items():
        assert getattr(result, name) == value, result.explain()


def test_fixed_settings_state_their_source() -> None:
    result = decided(dry_run(1e-3), n_jobs=2, executor_type="process")
    assert "fixed" in result.reason


def test_chunksize_is_kept_by_optimize() -> None:
    assert optimize(square, range(200), chunksize=5).chunksize == 5


def test_unpicklable_items_rule_out_processes_with_a_warning() -> None:
    result = decided(dry_run(5e-3, picklable=False))
    assert result.executor_type != "process"
    assert any("input items cannot be pickled" in w for w in result.warnings)
    with pytest.raises(TypeError, match="executor_type='thread'"):
        decided(dry_run(5e-3, picklable=False), executor_type="process")


def test_unknown_length_is_assumed_with_a_warning_by_decide() -> None:
    result = decided(dry_run(1e-4, total=None))
    assert result.total_items is None
    assert any("total_items" in w for w in result.warnings)


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
    with pytest.raises(ZeroDivisionError):
        optimize(lambda x: 1 // (x - 13), range(10, 20))


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


def test_unpicklable_items_still_run_without_processes() -> None:
    locks = [threading.Lock() for _ in range(50)]
    assert execute(lambda lock: lock.locked(), locks) == [False] * 50


def test_unpicklable_items_with_processes_forced_fail_at_once() -> None:
    with pytest.raises(TypeError, match="executor_type='thread'"):
        optimize(lambda lock: 1, [threading.Lock() for _ in range(5)], executor_type="process")


def test_unpicklable_results_rule_out_processes() -> None:
    result = optimize(lambda x: threading.Lock(), range(50))
    assert result.executor_type != "process"
    assert any("results cannot be pickled" in w for w in result.warnings)


# ------------------------------------------------------------------ explain


def test_explain_shows_the_typed_figures() -> None:
    result = optimize(square, range(200))
    text = result.explain()
    assert f"n_jobs={result.n_jobs}" in text and result.reason in text
    for label, _ in result.figures.rows():
        assert label in text
    for figure in ("mean item time (s)", "cpu time / time it could run",
                   "pickled input (bytes/item)", "usable cores", "available memory (bytes)",
                   "start method", "estimated speedup"):
        assert figure in text, figure
    assert str(result) == text
    assert result.figures.sampled_items is not None and result.figures.sampled_items >= 1
    assert result.figures.usable_cores == system.usable_cores()
    assert result.figures.values()["start_method"] == system.start_method()


def test_explain_lists_warnings() -> None:
    result = optimize(square, (x for x in range(100)))
    assert result.warnings
    assert all(f"warning: {w}" in result.explain() for w in result.warnings)


def test_verbose_prints_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    result = optimize(square, range(100), verbose=True)
    assert result.explain() in capsys.readouterr().out


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
    assert result.figures.sampled_items == 3
