"""What the report draws, derived from a `RunRecord`: lanes, bars, curves, tallies.

Both renderers read these views, so the HTML report and the Chrome trace agree on
lanes and labels. Every view is bounded in size whatever the run: a timeline holds at
most `max_bars` chunk bars plus a fixed number of aggregated cells, curves hold a
fixed number of points. That bound is what keeps a 100,000-chunk report small and
quick to open.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from amorsize.report.model import ChunkRecord, RunRecord, WorkerRecord

# Chunk bars drawn one by one. Past this, ordinary chunks are folded into per-lane
# time slices (busy share, chunk and item counts); failed and sampled chunks are always
# drawn one by one. 10,000 SVG bars open well under a second in Chromium.
DEFAULT_MAX_BARS = 10_000
# Points of the throughput and items-done curves.
CURVE_POINTS = 120
# Distinct chunk sizes listed one by one before sizes are grouped in powers of two.
SIZE_CLASSES = 12


@dataclass(frozen=True)
class Lane:
    """One row of the timeline (and one thread of the Chrome trace)."""

    index: int
    worker_id: Optional[int]
    pid: Optional[int]
    label: str
    chunks: int
    items: int
    busy_seconds: float


@dataclass(frozen=True)
class Cell:
    """Aggregated chunks of one lane in one time slice."""

    lane: int
    slice: int
    busy: float  # share of the slice the lane spent computing, 0..1
    chunks: int  # chunks that ended in this slice
    items: int


@dataclass(frozen=True)
class Timeline:
    """Bars drawn one by one, and (past the cap) aggregated cells."""

    bars: list[ChunkRecord]
    cells: list[Cell]
    slice_seconds: Optional[float]  # None: nothing aggregated
    aggregated_chunks: int
    max_bars: int


@dataclass(frozen=True)
class Curves:
    """Items done and throughput over time, from worker-measured chunk ends."""

    times: list[float]  # sample points, seconds since the run began
    items_done: list[int]  # cumulative items finished by then
    throughput: list[float]  # items per second over the window ending then
    window_seconds: float  # throughput window: long enough to hold several chunk ends


@dataclass(frozen=True)
class Prediction:
    """A plan's predicted course: from where the run stood to all items done."""

    label: str
    t0: float
    n0: int
    t1: float
    n1: int


def lane_label(worker: WorkerRecord) -> str:
    """Human label of a lane; the pid is shown where known."""
    pid = f" (pid {worker.pid})" if worker.pid is not None else ""
    if worker.worker_id is None:
        return f"calling process{pid}"
    return f"worker {worker.worker_id}{pid}"


def lanes(record: RunRecord) -> list[Lane]:
    """The calling process first, then each pool worker by id."""
    return [
        Lane(
            index=i,
            worker_id=w.worker_id,
            pid=w.pid,
            label=lane_label(w),
            chunks=w.chunks,
            items=w.items,
            busy_seconds=w.busy_seconds,
        )
        for i, w in enumerate(record.lanes())
    ]


def lane_index(record: RunRecord) -> dict[Optional[int], int]:
    """Map worker id (None: the calling process) to its lane index."""
    return {lane.worker_id: lane.index for lane in lanes(record)}


def span(record: RunRecord) -> float:
    """Seconds the timeline covers: the run's wall time, or the last chunk's end."""
    last = max((c.ended_at for c in record.chunks), default=record.run_started_at)
    return max(record.wall, last - record.run_started_at, 1e-6)


def timeline(record: RunRecord, max_bars: int = DEFAULT_MAX_BARS) -> Timeline:
    """Every chunk as a bar, or past `max_bars`, ordinary chunks folded into cells."""
    chunks = record.chunks
    if len(chunks) <= max_bars:
        return Timeline(list(chunks), [], None, 0, max_bars)
    special = [c for c in chunks if c.failed or c.sampled][:max_bars]
    rest = [c for c in chunks if not (c.failed or c.sampled)]
    index = lane_index(record)
    n_slices = max(100, min(2000, max_bars // max(1, len(index))))
    t0 = record.run_started_at
    width = span(record) / n_slices
    busy: dict[tuple[int, int], float] = {}
    counts: Counter[tuple[int, int]] = Counter()
    items: Counter[tuple[int, int]] = Counter()
    top = float(n_slices)
    for chunk in rest:  # the hot loop of a big report: plain arithmetic, no calls
        lane = index.get(chunk.worker_id, 0)
        a = (chunk.started_at - t0) / width
        b = (chunk.ended_at - t0) / width
        a = 0.0 if a < 0.0 else (top if a > top else a)
        b = a if b < a else (top if b > top else b)
        first = int(a)
        last = int(b)
        if first >= n_slices:
            first = n_slices - 1
        if last >= n_slices:
            last = n_slices - 1
        if first == last:
            key = (lane, first)
            busy[key] = busy.get(key, 0.0) + (b - a)
        else:
            for s in range(first, last + 1):
                overlap = (b if b < s + 1.0 else s + 1.0) - (a if a > s else float(s))
                if overlap > 0:
                    busy[(lane, s)] = busy.get((lane, s), 0.0) + overlap
        key = (lane, last)
        counts[key] += 1
        items[key] += chunk.size
    keys = sorted(set(busy) | set(counts))
    cells = [
        Cell(lane, s, min(1.0, busy.get((lane, s), 0.0)), counts[(lane, s)], items[(lane, s)])
        for lane, s in keys
    ]
    return Timeline(special, cells, width, len(rest), max_bars)


def _finished(record: RunRecord) -> tuple[list[float], list[int]]:
    """Sorted end times (since the run began) of finished chunks, and items by then."""
    t0 = record.run_started_at
    ends = sorted((c.ended_at - t0, c.size) for c in record.chunks if not c.failed)
    times = [t for t, _ in ends]
    done: list[int] = []
    total = 0
    for _, size in ends:
        total += size
        done.append(total)
    return times, done


def curves(record: RunRecord, points: int = CURVE_POINTS) -> Curves:
    """Items done (cumulative) and throughput (rolling window) at `points` times.

    Items arrive a chunk at a time, so a rate over fixed narrow bins is a comb of
    spikes; the window spans at least two typical chunks (and 1/40 of the run)."""
    times, done = _finished(record)
    total_span = span(record)
    durations = sorted(c.duration for c in record.chunks if not c.failed)
    typical = durations[len(durations) // 2] if durations else 0.0
    window = min(total_span, max(total_span / 40, 2 * typical))

    def done_at(t: float) -> int:
        k = bisect.bisect_right(times, t)
        return done[k - 1] if k else 0

    sample_times = [total_span * (k + 1) / points for k in range(points)]
    items_done = [done_at(t) for t in sample_times]
    throughput = [
        (n - (done_at(t - window) if t > window else 0)) / min(window, t)
        for t, n in zip(sample_times, items_done, strict=True)
    ]
    return Curves(sample_times, items_done, throughput, window)


def predictions(record: RunRecord) -> list[Prediction]:
    """Each plan's predicted line: from the items done when it was made to the total."""
    total = record.total_items
    if total is None:
        return []
    times, done = _finished(record)
    lines = []
    for number, plan in enumerate(record.plans):
        end = plan.predicted_end
        if end is None or not math.isfinite(end) or end <= plan.elapsed:
            continue
        k = bisect.bisect_right(times, plan.elapsed)
        n0 = done[k - 1] if k else 0
        label = "predicted" if number == 0 else f"revised prediction {number}"
        lines.append(Prediction(label, plan.elapsed, n0, end, total))
    return lines


def parallel_efficiency(record: RunRecord) -> Optional[float]:
    """As the run reported it, else busy time / (wall time x n_jobs)."""
    if record.parallel_efficiency is not None:
        return record.parallel_efficiency
    plan = record.final_plan
    if plan is None or record.wall <= 0 or plan.n_jobs <= 0:
        return None
    return record.total_busy_seconds / (record.wall * plan.n_jobs)


def size_distribution(record: RunRecord) -> list[tuple[str, int]]:
    """Tasks by item count: each size, or power-of-two classes when sizes vary a lot."""
    sizes = Counter(c.size for c in record.chunks)
    if len(sizes) <= SIZE_CLASSES:
        return [(str(size), n) for size, n in sorted(sizes.items())]
    classes: Counter[int] = Counter()
    for size, n in sizes.items():
        classes[max(0, size).bit_length()] += n
    rows = []
    for bits, n in sorted(classes.items()):
        low, high = (0, 0) if bits == 0 else (1 << (bits - 1), (1 << bits) - 1)
        rows.append((str(low) if low == high else f"{low}\u2013{high}", n))
    return rows


def size_stats(record: RunRecord) -> Optional[tuple[int, float, int, int]]:
    """(min, mean, median, max) items per task, or None without tasks."""
    sizes = sorted(c.size for c in record.chunks)
    if not sizes:
        return None
    return sizes[0], sum(sizes) / len(sizes), sizes[len(sizes) // 2], sizes[-1]


def errors_by_type(record: RunRecord) -> list[tuple[str, int]]:
    """Failures counted by exception class name, most frequent first."""
    return Counter(e.error_type for e in record.errors).most_common()
