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
from typing import Any, Optional

import pytest

from amorsize.sampling import TRACE_BELOW_SECONDS, ItemMeasurement, known_length, take_sample
from tests.workloads import Boom, raise_on_13, square


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
    assert sample.mean_pickle_seconds == 0.0


def test_function_error_stops_the_sample_and_is_kept() -> None:
    sample = take_sample(raise_on_13, [11, 12, 13, 14, 15], 5)
    assert sample.results == [11, 12]
    assert isinstance(sample.error, Boom)
    assert sample.error_traceback is not None
    assert "raise_on_13" in sample.error_traceback
    assert "Boom" in sample.error_traceback


def test_tracemalloc_is_stopped_after_an_error_on_the_first_item() -> None:
    take_sample(raise_on_13, [13, 1], 5)
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
    assert sample.mean_input_bytes == expected_input
    assert sample.mean_result_bytes == expected_result
    assert sample.mean_pickle_seconds > 0
    assert sample.batch_pickle_seconds is not None


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
        print(sample.traced_index, sample.peak_memory_bytes, before <= after)
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
    if sample.measurements[0].wall_seconds < TRACE_BELOW_SECONDS:
        assert sample.traced_index == 1
    walls = [m.wall_seconds for i, m in enumerate(sample.measurements)
             if i not in (0, sample.traced_index)]
    assert sample.mean_item_seconds == pytest.approx(sum(walls) / len(walls))


def test_sleeping_function_has_a_low_cpu_ratio() -> None:
    def wait(x: int) -> int:
        time.sleep(0.02)
        return x

    sample = take_sample(wait, range(4), 4)
    assert sample.cpu_ratio < 0.5
    assert sample.mean_item_seconds > 0


def test_statistics_exclude_the_first_item_when_there_are_others() -> None:
    sample = take_sample(square, range(5), 5)
    walls = [m.wall_seconds for m in sample.measurements]
    timed = [w for i, w in enumerate(walls) if i not in (0, sample.traced_index)]
    assert sample.mean_item_seconds == pytest.approx(sum(timed) / len(timed))
    assert sample.compute_seconds == pytest.approx(sum(walls))
    single = take_sample(square, [7], 5)
    assert single.mean_item_seconds == single.measurements[0].wall_seconds
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
    assert returns_lock.batch_pickle_seconds is None


def test_result_that_cannot_be_unpickled_is_not_picklable() -> None:
    sample = take_sample(lambda x: Unloadable(), range(2), 2)
    assert sample.error is None
    assert len(sample.results) == 2
    assert not sample.results_picklable


def test_known_length() -> None:
    assert known_length([1, 2, 3]) == 3
    assert known_length(range(10)) == 10
    assert known_length({"a": 1}) == 1
    assert known_length(iter([1, 2])) is None
    assert known_length(x for x in range(3)) is None
    assert known_length(itertools.count()) is None


def test_enough_ends_the_sample_early_and_leaves_the_rest_unread() -> None:
    read = [0]
    asked: list[tuple[int, Optional[int]]] = []

    def enough(measurements: list[ItemMeasurement], total: Optional[int]) -> bool:
        asked.append((len(measurements), total))
        return len(measurements) >= 2

    sample = take_sample(square, counting(20, read), 5, enough)
    assert sample.results == [0, 1]
    assert read[0] == 2  # the third item was never read
    assert asked == [(1, None), (2, None)]
    assert list(sample.remaining_data()) == list(range(20))


def test_enough_is_not_asked_after_the_last_item_and_sees_the_traced_one() -> None:
    seen: list[list[bool]] = []
    sample = take_sample(square, [1, 2, 3], 3,
                         lambda measurements, total: bool(
                             seen.append([m.traced for m in measurements])))
    assert sample.results == [1, 4, 9]
    assert seen == [[False], [False, True]]  # fast items: the second runs traced


def test_batch_pickling_of_small_items_is_not_inflated_by_a_cold_first_pickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import amorsize.sampling as sampling

    real_dumps = pickle.dumps
    calls = [0]

    def cold_then_warm(value: Any, protocol: Optional[int] = None) -> bytes:
        calls[0] += 1
        if calls[0] == 1:
            time.sleep(0.001)  # the first pickling of a process, running cold
        return real_dumps(value, protocol=protocol)

    monkeypatch.setattr(sampling.pickle, "dumps", cold_then_warm)
    # However slow the sleep makes the first timing, the batch counts as cheap here.
    monkeypatch.setattr(sampling, "BATCH_RETIME_BUDGET", 1.0)
    per_item = sampling._batch_pickle_seconds([1, 2, 3, 4, 5], [1, 4, 9, 16, 25])
    assert calls[0] > 2  # timed again
    assert per_item < 0.0001  # the cold millisecond / 5 items would be 0.0002
