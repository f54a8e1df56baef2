"""Dry run: call the function on the first few items and measure what it costs.

The sampled results are kept so execute() never calls the function twice on an item.
One-shot iterables are never materialised: the sampled items are read with islice and
the rest of the iterator is handed back untouched.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import statistics
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class ItemMeasurement:
    """Costs measured for one sampled item."""

    wall_seconds: float
    cpu_seconds: float
    input_bytes: Optional[int]
    input_pickle_seconds: float
    result_bytes: Optional[int]
    result_pickle_seconds: float
    result_unpickle_seconds: float
    traced: bool = False  # run under tracemalloc, so slower than it is


@dataclass
class Sample:
    """What the dry run measured, plus its results and the untouched rest of the input."""

    items: list[Any]
    results: list[Any]
    measurements: list[ItemMeasurement]
    rest: Iterator[Any]
    total_items: Optional[int]
    peak_memory_bytes: int
    function_picklable: bool
    items_picklable: bool
    results_picklable: bool
    wall_start: float
    wall_end: float
    started: float  # perf_counter at the start of the first item
    finished: float  # perf_counter at the end of the last item
    batch_pickle_seconds: Optional[float] = None  # per item, pickled as one list
    error: Optional[BaseException] = None
    error_traceback: Optional[str] = None
    pid: int = field(default_factory=os.getpid)
    traced_index: Optional[int] = None  # the item run under tracemalloc (slowed down)

    @property
    def compute_seconds(self) -> float:
        """Total function time over the sampled items."""
        return sum(m.wall_seconds for m in self.measurements)

    def _timed(self) -> list[ItemMeasurement]:
        # The first item pays for warm-up and the traced one for tracemalloc; leave
        # them out when there are others to go by.
        skip = {0, self.traced_index}
        timed = [m for i, m in enumerate(self.measurements) if i not in skip]
        return timed or self.measurements[-1:]

    @property
    def mean_item_seconds(self) -> float:
        """Mean function time per item (first item excluded when there are more)."""
        timed = self._timed()
        return statistics.fmean(m.wall_seconds for m in timed) if timed else 0.0

    @property
    def item_seconds_cv(self) -> float:
        """Coefficient of variation of the function time per item."""
        walls = [m.wall_seconds for m in self._timed()]
        if len(walls) < 2:
            return 0.0
        mean = statistics.fmean(walls)
        # Plain floats: statistics.pstdev computes exactly with fractions, far slower.
        variance = statistics.fmean([(w - mean) ** 2 for w in walls])
        return math.sqrt(variance) / mean if mean > 0 else 0.0

    @property
    def cpu_ratio(self) -> float:
        """CPU time / wall time of the function: near 1 for compute, near 0 for I/O."""
        timed = self._timed()
        wall = sum(m.wall_seconds for m in timed)
        cpu = sum(m.cpu_seconds for m in timed)
        return min(1.0, cpu / wall) if wall > 0 else 1.0

    def _mean(self, attribute: str) -> float:
        values = [getattr(m, attribute) for m in self.measurements]
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else 0.0

    @property
    def mean_input_bytes(self) -> float:
        """Mean pickled size of an input item."""
        return self._mean("input_bytes")

    @property
    def mean_result_bytes(self) -> float:
        """Mean pickled size of a result."""
        return self._mean("result_bytes")

    @property
    def mean_pickle_seconds(self) -> float:
        """Time per item to pickle inputs, pickle results and unpickle results.

        Measured on the sampled items pickled as one list, as a chunk travels; falls
        back to the per-item figures when the batch could not be pickled.
        """
        if self.batch_pickle_seconds is not None:
            return self.batch_pickle_seconds
        return (
            self._mean("input_pickle_seconds")
            + self._mean("result_pickle_seconds")
            + self._mean("result_unpickle_seconds")
        )

    def remaining_data(self) -> Iterator[Any]:
        """Return every item, sampled ones first, without consuming the rest."""
        return itertools.chain(self.items, self.rest)


# The sampled batch is pickled again (best of three) while its best time is below this.
BATCH_RETIME_BUDGET = 0.0002
# Items slower than this are not run under tracemalloc (it would cost up to 10x).
TRACE_BELOW_SECONDS = 0.001


def _pickled(value: Any) -> tuple[Optional[bytes], float]:
    started = time.perf_counter()
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None, 0.0
    return data, time.perf_counter() - started


def _unpickle_seconds(data: Optional[bytes]) -> Optional[float]:
    """Seconds to unpickle `data`; None when it is missing or cannot be unpickled."""
    if data is None:
        return None
    started = time.perf_counter()
    try:
        pickle.loads(data)
    except Exception:
        return None
    return time.perf_counter() - started


def _is_picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def known_length(data: Iterable[Any]) -> Optional[int]:
    """Return len(data) where the object has one, else None (never materialises)."""
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


# Decides, after each sampled item, whether the sample may stop there (True).
EnoughSampled = Callable[[list[ItemMeasurement], Optional[int]], bool]


def take_sample(
    func: Callable[[Any], Any],
    data: Iterable[Any],
    sample_size: int,
    enough: Optional[EnoughSampled] = None,
) -> Sample:
    """Run `func` on up to `sample_size` first items of `data` and measure each call.

    `enough(measurements, total_items)`, if given, is asked after every item but the
    last; returning True ends the sample there (the rest of the input is untouched).
    A function that raises stops the sample; the exception and its traceback are
    kept in `Sample.error` for the caller to report.
    """
    total = known_length(data)
    iterator = iter(data)
    items: list[Any] = []
    results: list[Any] = []
    measurements: list[ItemMeasurement] = []
    items_picklable = results_picklable = True
    error: Optional[BaseException] = None
    error_tb: Optional[str] = None
    peak = 0
    traced_index: Optional[int] = None
    # The first pickling in a process takes 5-10x longer than the next: do it untimed,
    # so the first item's pickling times (used to judge it early) are not inflated.
    pickle.loads(pickle.dumps(0, protocol=pickle.HIGHEST_PROTOCOL))
    wall_start = time.time()
    started = time.perf_counter()
    for index in range(sample_size):
        if index and enough is not None and enough(measurements, total):
            break
        try:
            item = next(iterator)
        except StopIteration:
            break
        items.append(item)
        input_data, input_seconds = _pickled(item)
        items_picklable &= input_data is not None
        # tracemalloc slows a call down up to 10x: the first item's peak comes from the
        # resident high-water mark; the second is traced as well (the larger figure
        # wins) only when the first took under TRACE_BELOW_SECONDS.
        trace_memory = (
            index == 1
            and measurements[0].wall_seconds < TRACE_BELOW_SECONDS
            and not tracemalloc.is_tracing()
        )
        resident = _ResidentPeak() if index == 0 else None
        if trace_memory:
            traced_index = index
            tracemalloc.start()
        try:
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            result = func(item)
            t1 = time.perf_counter()
            cpu1 = time.process_time()
            if resident is not None:
                peak = resident.growth()
            if trace_memory:
                peak = max(peak, tracemalloc.get_traced_memory()[1])
        except Exception as exc:
            error, error_tb = exc, traceback.format_exc()
            break
        finally:
            if trace_memory:
                tracemalloc.stop()
        result_data, result_seconds = _pickled(result)
        unpickle_seconds = _unpickle_seconds(result_data)
        if unpickle_seconds is None:
            result_data = None
        results_picklable &= result_data is not None
        results.append(result)
        measurements.append(
            ItemMeasurement(
                wall_seconds=t1 - t0,
                cpu_seconds=cpu1 - cpu0,
                input_bytes=None if input_data is None else len(input_data),
                input_pickle_seconds=input_seconds,
                result_bytes=None if result_data is None else len(result_data),
                result_pickle_seconds=result_seconds,
                result_unpickle_seconds=unpickle_seconds or 0.0,
                traced=trace_memory,
            )
        )
    finished = time.perf_counter()
    batch = None
    if items_picklable and results_picklable and results:
        batch = _batch_pickle_seconds(items[: len(results)], results)
    return Sample(
        items=items,
        results=results,
        measurements=measurements,
        rest=iterator,
        total_items=total,
        peak_memory_bytes=peak,
        function_picklable=_is_picklable(func),
        items_picklable=items_picklable,
        results_picklable=results_picklable,
        wall_start=wall_start,
        wall_end=time.time(),
        started=started,
        finished=finished,
        batch_pickle_seconds=batch,
        error=error,
        error_traceback=error_tb,
        traced_index=traced_index,
    )


class _ResidentPeak:
    """Resident memory growth over a call, from Linux's /proc/self/status.

    Reads VmRSS and the VmHWM high-water mark before and after; never resets the
    high-water mark (that would change what the caller's own peak-memory readings,
    such as getrusage's ru_maxrss, report). When the call raised the high-water mark,
    the growth is measured to that peak; otherwise only the RSS it kept is seen, an
    underestimate. Costs microseconds, unlike tracemalloc. Elsewhere: 0.
    """

    def __init__(self) -> None:
        self.rss_before = _proc_status_kib("VmRSS")
        self.hwm_before = _proc_status_kib("VmHWM")

    def growth(self) -> int:
        """Bytes of resident memory the call needed above what was resident before."""
        if not self.rss_before:
            return 0
        hwm_after = _proc_status_kib("VmHWM")
        if hwm_after > self.hwm_before:
            return max(0, hwm_after - self.rss_before) * 1024
        return max(0, _proc_status_kib("VmRSS") - self.rss_before) * 1024


def _proc_status_kib(field_name: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _batch_pickle_seconds(items: list[Any], results: list[Any]) -> float:
    """Per-item seconds to pickle `items` and `results` as lists and unpickle results.

    The best of up to three timings, while the best stays cheap (under 0.2 ms): the
    first pickling of a list in a process runs cold, several times slower, which made
    items of a few microseconds look too dear to send to a worker.
    """
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        data = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
        best = min(best, time.perf_counter() - t0)
        if best > BATCH_RETIME_BUDGET:
            break
    return best / len(results)
