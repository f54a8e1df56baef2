"""Dry run: call the function on the first few items in the calling process, measure.

Used by optimize(), and by execute() in automatic mode only (no executor fixed): a
function too cheap for any pool must be found out without starting one. The sampled
results are kept, so no item is computed twice. One-shot iterables are never
materialised: the sampled items are read with islice and the rest of the iterator is
handed back untouched.

Each item's time is split into CPU time and run-queue wait of this thread (see
`measure`), so a busy machine does not make a computing function look like a
waiting one.
"""

from __future__ import annotations

import math
import os
import pickle
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from amorsize import costmodel
from amorsize.measure import could_run, cpu_share, thread_clock
from amorsize.worker import ChunkReport, worker_identity

# An item at least this slow (not the first, which warms up) ends the sample: the
# workers measure the rest.
SLOW_ITEM_SECONDS = 0.001
# The sample also ends once its items took this long together.
SAMPLE_BUDGET_SECONDS = 0.05
# Items slower than this are not run under tracemalloc (it would cost up to 10x).
TRACE_BELOW_SECONDS = 0.001


@dataclass
class ItemMeasurement:
    """Costs measured for one sampled item."""

    wall_seconds: float
    cpu_seconds: float
    run_delay: float
    input_bytes: Optional[int]
    input_pickle_seconds: float
    result_bytes: Optional[int]
    result_pickle_seconds: float
    result_unpickle_seconds: float
    traced: bool = False  # run under tracemalloc, so slower than it is


@dataclass
class Sample:
    """What the dry run measured, its results, and the untouched rest of the input."""

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
    compute_seconds: float  # the function's own time over the sampled items
    cpu_seconds: float
    run_delay: float
    error: Optional[BaseException] = None
    error_traceback: Optional[str] = None
    pid: int = field(default_factory=os.getpid)

    def _timed(self) -> list[ItemMeasurement]:
        # The first item pays for warm-up (imports, caches) and a traced one for
        # tracemalloc: left out when there are others.
        timed = [m for m in self.measurements[1:] if not m.traced]
        return timed or [m for m in self.measurements if not m.traced] or self.measurements

    @property
    def mean_item_seconds(self) -> float:
        """Function time per item, run-queue wait left out (first item excluded when
        there are more)."""
        timed = self._timed()
        if not timed:
            return 0.0
        return sum(could_run(m.cpu_seconds, m.wall_seconds, m.run_delay)
                   for m in timed) / len(timed)

    @property
    def item_seconds_cv(self) -> float:
        """Coefficient of variation of the function time per item."""
        walls = [m.wall_seconds for m in self._timed()]
        if len(walls) < 2:
            return 0.0
        mean = sum(walls) / len(walls)
        variance = sum((w - mean) ** 2 for w in walls) / len(walls)
        return math.sqrt(variance) / mean if mean > 0 else 0.0

    @property
    def cpu_share(self) -> float:
        """Computing share of the item time, 0 (waits) to 1 (computes)."""
        timed = self._timed()
        return cpu_share(sum(m.cpu_seconds for m in timed),
                         sum(m.wall_seconds for m in timed),
                         sum(m.run_delay for m in timed)) if timed else 1.0

    def _mean(self, attribute: str) -> float:
        # Pickling is timed per item too; the first one in a process runs cold.
        values = [getattr(m, attribute) for m in self._timed()]
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else 0.0

    def workload(self, items: int) -> costmodel.Workload:
        """The cost model's figures for `items` items like the sampled ones."""
        return costmodel.Workload(
            items=max(1, items),
            item_seconds=self.mean_item_seconds,
            cpu_share=self.cpu_share,
            item_cv=self.item_seconds_cv,
            parent_ipc_seconds=self._mean("input_pickle_seconds")
            + self._mean("result_unpickle_seconds"),
            worker_ipc_seconds=self._mean("result_pickle_seconds"),
            transfer_bytes=self._mean("input_bytes") + self._mean("result_bytes"),
            peak_memory=self.peak_memory_bytes,
        )

    def report(self, sampled: bool) -> ChunkReport:
        """The dry run's items as task 0 of the calling process; `sampled`: the run
        went on in a pool."""
        failed = self.error is not None
        return ChunkReport(
            chunk_id=0, item_count=len(self.results) + failed, done=len(self.results),
            results=self.results, wall_start=self.wall_start, wall_end=self.wall_end,
            duration=self.compute_seconds, cpu_seconds=self.cpu_seconds,
            run_delay=self.run_delay, pid=self.pid, worker_key=worker_identity(),
            worker_started_at=self.wall_start, error=self.error,
            error_traceback=self.error_traceback,
            error_index=len(self.results) if failed else None, sampled=sampled,
            executor_kind="serial")

    def remaining_data(self) -> Iterator[Any]:
        """Every item, sampled ones first, without consuming the rest."""
        import itertools

        return itertools.chain(self.items, self.rest)


def _pickled(value: Any) -> tuple[Optional[bytes], float]:
    started = time.perf_counter()
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None, 0.0
    return data, time.perf_counter() - started


def _unpickle_seconds(data: Optional[bytes]) -> Optional[float]:
    if data is None:
        return None
    started = time.perf_counter()
    try:
        pickle.loads(data)
    except Exception:
        return None
    return time.perf_counter() - started


def known_length(data: Iterable[Any]) -> Optional[int]:
    """len(data) where the object has one, else None (never materialises).

    Raises ValueError naming `data` when the length does not fit an index
    (range(10**19)).
    """
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None
    except OverflowError as too_long:
        raise ValueError(
            "data has more items than Python can index (len() overflows); pass an "
            "iterator instead, e.g. iter(data), with total_items= if you know a bound"
        ) from too_long


def take_sample(func: Callable[[Any], Any], data: Iterable[Any], sample_size: int) -> Sample:
    """Run `func` on up to `sample_size` first items of `data` and measure each call.

    Ends early once an item after the first took SLOW_ITEM_SECONDS, or the items
    together SAMPLE_BUDGET_SECONDS. A function that raises (SystemExit included)
    stops the sample; the exception and its traceback are kept in `Sample.error`.
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
    compute = cpu_total = delay_total = 0.0
    # The first pickling in a process takes 5-10x longer than the next: do it untimed.
    pickle.loads(pickle.dumps(0, protocol=pickle.HIGHEST_PROTOCOL))
    wall_start = time.time()
    timed: Optional[ItemMeasurement] = None  # the last item after the first, untraced
    for index in range(sample_size):
        if timed is not None and (timed.wall_seconds >= SLOW_ITEM_SECONDS
                                  or compute >= SAMPLE_BUDGET_SECONDS):
            break
        try:
            item = next(iterator)
        except StopIteration:
            break
        items.append(item)
        input_data, input_seconds = _pickled(item)
        items_picklable &= input_data is not None
        trace_memory = (index == 1 and measurements[0].wall_seconds < TRACE_BELOW_SECONDS
                        and not tracemalloc.is_tracing())
        resident = _ResidentPeak() if index == 0 else None
        if trace_memory:
            tracemalloc.start()
        try:
            cpu0, delay0 = thread_clock()
            t0 = time.perf_counter()
            result = func(item)
            t1 = time.perf_counter()
            cpu1, delay1 = thread_clock()
            if resident is not None:
                peak = resident.growth()
            if trace_memory:
                peak = max(peak, tracemalloc.get_traced_memory()[1])
        except (Exception, SystemExit) as exc:
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
        compute += t1 - t0
        cpu_total += cpu1 - cpu0
        delay_total += delay1 - delay0
        measurements.append(measured := ItemMeasurement(
            wall_seconds=t1 - t0, cpu_seconds=cpu1 - cpu0, run_delay=delay1 - delay0,
            input_bytes=None if input_data is None else len(input_data),
            input_pickle_seconds=input_seconds,
            result_bytes=None if result_data is None else len(result_data),
            result_pickle_seconds=result_seconds,
            result_unpickle_seconds=unpickle_seconds or 0.0, traced=trace_memory,
        ))
        if index > 0 and not trace_memory:
            timed = measured
    return Sample(
        items=items, results=results, measurements=measurements, rest=iterator,
        total_items=total, peak_memory_bytes=peak,
        function_picklable=_pickled(func)[0] is not None,
        items_picklable=items_picklable, results_picklable=results_picklable,
        wall_start=wall_start, wall_end=time.time(), compute_seconds=compute,
        cpu_seconds=cpu_total, run_delay=delay_total, error=error, error_traceback=error_tb,
    )


class _ResidentPeak:
    """Resident memory growth over a call, from Linux's /proc/self/status.

    Reads VmRSS and the VmHWM high-water mark before and after; never resets the
    high-water mark (that would change what the caller's own peak-memory readings
    report). When the call raised the high-water mark, the growth is measured to that
    peak; otherwise only the RSS it kept is seen, an underestimate. Elsewhere: 0.
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
