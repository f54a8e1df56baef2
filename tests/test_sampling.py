"""The dry run: what it measures, what it keeps, and what it never consumes."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from amorsize.measure import could_run, run_delay_known
from amorsize.sampling import (
    SAMPLE_BUDGET_SECONDS,
    SLOW_ITEM_SECONDS,
    TRACE_BELOW_SECONDS,
    known_length,
    take_sample,
)
from tests.workloads import Boom, square


class CallCounter:
    """A function counting its calls per item."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, x: int) -> int:
        self.calls.append(x)
        return x + 1


class Unloadable:
    """Pickles fine but fails to unpickle."""

    def __reduce__(self) -> Any:
        return (_refuse, ())


def _refuse() -> None:
    raise RuntimeError("cannot be rebuilt")


def counting(n: int, read: list[int]) -> Iterator[int]:
    """Yield 0..n-1, recording how many were read."""
    for i in range(n):
        read[0] += 1
        yield i


def test_sample_of_a_list_keeps_items_results_and_length() -> None:
    sample = take_sample(square, [3, 1, 4, 1, 5, 9, 2, 6], 5)
    assert sample.items == [3, 1, 4, 1, 5]
    assert sample.results == [9, 1, 16, 1, 25]
    assert len(sample.measurements) == 5
    assert sample.total_items == 8
    assert list(sample.rest) == [9, 2, 6]
    assert sample.error is None


def test_function_called_once_per_sampled_item() -> None:
    counter = CallCounter()
    sample = take_sample(counter, range(100), 4)
    assert counter.calls == [0, 1, 2, 3]
    assert sample.results == [1, 2, 3, 4]


def test_generator_rest_continues_after_the_sample() -> None:
    read = [0]
    sample = take_sample(square, counting(20, read), 5)
    assert read[0] == 5
    assert sample.total_items is None
    assert list(sample.remaining_data()) == list(range(20))
    assert read[0] == 20


def test_remaining_data_does_not_consume_the_rest() -> None:
    read = [0]
    sample = take_sample(square, counting(20, read), 3)
    remaining = sample.remaining_data()
    assert read[0] == 3
    assert list(itertools.islice(remaining, 4)) == [0, 1, 2, 3]
    assert read[0] == 4


def test_unbounded_input_is_never_materialised() -> None:
    sample = take_sample(square, itertools.count(), 5)
    assert sample.total_items is None
    assert sample.results == [0, 1, 4, 9, 16]
    assert next(sample.rest) == 5


def test_sample_larger_than_input_takes_everything() -> None:
    sample = take_sample(square, [2, 3], 5)
    assert sample.results == [4, 9]
    assert list(sample.rest) == []


def test_empty_input() -> None:
    sample = take_sample(square, [], 5)
    assert sample.items == [] and sample.results == []
    assert sample.total_items == 0
    assert sample.mean_item_seconds == 0.0
    assert sample.item_seconds_cv == 0.0
    workload = sample.workload(10)
    assert workload.parent_ipc_seconds == 0.0 and workload.transfer_bytes == 0.0


def fast_raise_on_13(x: int) -> int:
    """Fail on item 13, at once (a slow item would end the sample first)."""
    if x == 13:
        raise Boom(f"item {x} is unlucky")
    return x


def test_function_error_stops_the_sample_and_is_kept() -> None:
    sample = take_sample(fast_raise_on_13, [11, 12, 13, 14, 15], 5)
    assert sample.results == [11, 12]
    assert isinstance(sample.error, Boom)
    assert sample.error_traceback is not None
    assert "raise_on_13" in sample.error_traceback
    assert "Boom" in sample.error_traceback


def test_sys_exit_in_the_function_is_kept_as_its_error() -> None:
    def exits(x: int) -> int:
        sys.exit(4)

    sample = take_sample(exits, [1, 2], 5)
    assert isinstance(sample.error, SystemExit) and sample.results == []


def test_tracemalloc_is_stopped_after_an_error_on_the_first_item() -> None:
    take_sample(fast_raise_on_13, [13, 1], 5)
    assert not tracemalloc.is_tracing()


def test_tracemalloc_is_stopped_after_an_interrupt_on_the_first_item() -> None:
    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        take_sample(interrupted, [1, 2], 5)
    assert not tracemalloc.is_tracing()


def test_caller_tracemalloc_is_left_running() -> None:
    tracemalloc.start()
    try:
        take_sample(square, range(3), 3)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_input_generator_error_propagates() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        take_sample(square, broken(), 5)


def test_pickled_sizes_are_measured() -> None:
    items = [b"x" * 1000, b"y" * 1000, b"z" * 1000]
    sample = take_sample(len, items, 3)
    expected_input = len(pickle.dumps(items[0], protocol=pickle.HIGHEST_PROTOCOL))
    expected_result = len(pickle.dumps(1000, protocol=pickle.HIGHEST_PROTOCOL))
    workload = sample.workload(3)
    assert workload.transfer_bytes == expected_input + expected_result
    assert workload.parent_ipc_seconds > 0


BIG = 64 * 1024 * 1024  # above glibc's largest mmap threshold: always fresh pages


def _sample_in_fresh_process(pause: float, prior_peak: bool = False) -> tuple[str, int, str]:
    """take_sample() of a call writing BIG bytes (then sleeping `pause` s) in a fresh
    interpreter, whose resident high-water mark the call is sure to raise unless
    `prior_peak` first raised it higher (2 x BIG, freed). Returns the traced index, the
    peak measured, and whether the process's ru_maxrss never went down."""
    script = textwrap.dedent(f"""
        import resource, time
        from amorsize.sampling import take_sample
        if {prior_peak}:
            del_me = b"y" * {2 * BIG}
            del del_me
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        def allocate(x):
            block = b"x" * {BIG}
            time.sleep({pause})
            return len(block) + x
        sample = take_sample(allocate, range(3), 3)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        traced = [i for i, m in enumerate(sample.measurements) if m.traced]
        print(traced[0] if traced else None, sample.peak_memory_bytes, before <= after)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    return out[0], int(out[1]), out[2]


def test_peak_memory_of_a_call_is_measured() -> None:
    _, peak, _ = _sample_in_fresh_process(0.0)
    assert peak >= BIG * 0.9


def test_a_slow_call_is_not_run_under_tracemalloc() -> None:
    traced, peak, _ = _sample_in_fresh_process(0.005)  # > TRACE_BELOW_SECONDS
    assert traced == "None"
    assert peak >= BIG * 0.9  # from the resident high-water mark


def test_sampling_leaves_the_callers_peak_memory_reading_alone() -> None:
    # Resetting the high-water mark would drop ru_maxrss below the earlier 2 x BIG peak.
    _, _, not_lowered = _sample_in_fresh_process(0.005, prior_peak=True)
    assert not_lowered == "True"


def test_a_fast_call_is_traced_once_and_left_out_of_the_timing() -> None:
    sample = take_sample(square, range(5), 5)
    traced = [i for i, m in enumerate(sample.measurements) if m.traced]
    expected = [1] if sample.measurements[0].wall_seconds < TRACE_BELOW_SECONDS else []
    assert traced == expected
    timed = [m for i, m in enumerate(sample.measurements) if i != 0 and not m.traced]
    assert sample.mean_item_seconds == pytest.approx(
        sum(could_run(m.cpu_seconds, m.wall_seconds, m.run_delay) for m in timed)
        / len(timed))


def test_sleeping_function_has_a_low_cpu_share() -> None:
    def wait(x: int) -> int:
        time.sleep(0.02)
        return x

    sample = take_sample(wait, range(4), 4)
    assert sample.cpu_share < 0.5
    assert sample.mean_item_seconds > 0


def spin_for(seconds: float) -> int:
    """Compute (never wait) for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    total = 0
    while time.thread_time() < end:
        total += 1
    return total


@pytest.mark.skipif(not run_delay_known(), reason="needs Linux schedstat")
def test_a_computing_function_reads_as_computing_on_a_busy_machine() -> None:
    import os

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(2 * (os.cpu_count() or 1))]
    try:
        sample = take_sample(lambda x: spin_for(0.003), range(4), 4)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    # The time it waited for a CPU is left out: it still reads as computing.
    assert sample.cpu_share > 0.6
    assert sample.run_delay >= 0


def test_a_slow_item_ends_the_sample_once_one_after_the_first_was_timed() -> None:
    read = [0]
    sample = take_sample(lambda x: spin_for(2 * SLOW_ITEM_SECONDS), counting(20, read), 5)
    assert len(sample.results) == 2 and read[0] == 2
    assert list(sample.remaining_data()) == list(range(20))


def test_the_sample_ends_when_its_items_took_the_budget() -> None:
    per_item = SAMPLE_BUDGET_SECONDS / 3
    sample = take_sample(lambda x: spin_for(per_item), range(100), 50)
    assert 2 <= len(sample.results) < 50


def test_statistics_exclude_the_first_item_when_there_are_others() -> None:
    sample = take_sample(square, range(5), 5)
    timed = [m for i, m in enumerate(sample.measurements) if i != 0 and not m.traced]
    assert sample.mean_item_seconds == pytest.approx(
        sum(could_run(m.cpu_seconds, m.wall_seconds, m.run_delay) for m in timed)
        / len(timed))
    assert sample.compute_seconds == pytest.approx(
        sum(m.wall_seconds for m in sample.measurements))
    single = take_sample(square, [7], 5)
    only = single.measurements[0]
    assert single.mean_item_seconds == pytest.approx(
        could_run(only.cpu_seconds, only.wall_seconds, only.run_delay))
    assert single.item_seconds_cv == 0.0


def test_picklability_flags() -> None:
    assert take_sample(square, range(3), 3).function_picklable
    assert not take_sample(lambda x: x, range(3), 3).function_picklable
    locks = take_sample(lambda lock: 1, [threading.Lock()], 1)
    assert not locks.items_picklable
    assert locks.results_picklable
    returns_lock = take_sample(lambda x: threading.Lock(), range(2), 2)
    assert returns_lock.items_picklable
    assert not returns_lock.results_picklable


def test_result_that_cannot_be_unpickled_is_not_picklable() -> None:
    sample = take_sample(lambda x: Unloadable(), range(2), 2)
    assert sample.error is None
    assert len(sample.results) == 2
    assert not sample.results_picklable


def test_known_length() -> None:
    with pytest.raises(ValueError, match="data has more items than Python can index"):
        known_length(range(10**19))
    assert known_length([1, 2, 3]) == 3
    assert known_length(range(10)) == 10
    assert known_length({"a": 1}) == 1
    assert known_length(iter([1, 2])) is None
    assert known_length(x for x in range(3)) is None
    assert known_length(itertools.count()) is None
