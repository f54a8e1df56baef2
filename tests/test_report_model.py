"""RunRecord and the views drawn from it: tallies, lanes, caps and aggregation, curves."""

from __future__ import annotations

import pytest

from amorsize.report import ChunkRecord, ErrorRecord, Identity, PlanRecord, RunRecord, views

T0 = 1_000.0


def record_with(chunks: list[ChunkRecord], **kwargs: object) -> RunRecord:
    record = RunRecord(identity=Identity(function="m:f", pid=10), run_started_at=T0,
                       **kwargs)  # type: ignore[arg-type]
    record.add_plan(PlanRecord(elapsed=0.0, executor_type="process", n_jobs=2, chunksize=4,
                               estimated_speedup=1.8, predicted_end=2.2))
    for chunk in chunks:
        record.add_chunk(chunk)
    return record


def chunk(i: int, worker: int | None, start: float, end: float, size: int = 4,
          **kwargs: object) -> ChunkRecord:
    return ChunkRecord(chunk_id=i, worker_id=worker, pid=None if worker is None else 20 + worker,
                       size=size, started_at=T0 + start, ended_at=T0 + end,
                       **kwargs)  # type: ignore[arg-type]


def test_tallies_per_lane_and_failed_chunks_count_busy_but_not_items() -> None:
    record = record_with([chunk(0, None, 0.0, 0.1, sampled=True), chunk(1, 0, 0.2, 0.5),
                          chunk(2, 1, 0.2, 0.4)])
    index = record.add_error(ErrorRecord("ValueError", "bad", chunk_id=3, worker_id=1))
    record.add_chunk(chunk(3, 1, 0.4, 0.6, error=index))
    assert record.items_completed == 12
    assert record.chunks_seen == 4
    assert record.workers[1].chunks == 2 and record.workers[1].items == 4
    assert record.workers[1].busy_seconds == pytest.approx(0.4)
    assert record.total_busy_seconds == pytest.approx(0.1 + 0.3 + 0.4)
    assert record.chunks[-1].failed and not record.chunks[0].failed


def test_lanes_put_the_calling_process_first_even_when_it_ran_nothing() -> None:
    record = record_with([chunk(1, 1, 0.0, 0.1), chunk(2, 0, 0.0, 0.1)])
    lanes = views.lanes(record)
    assert [lane.worker_id for lane in lanes] == [None, 0, 1]
    assert lanes[0].label == "calling process (pid 10)"
    assert lanes[2].label == "worker 1 (pid 21)"
    assert None not in record.workers  # reading lanes adds nothing to the record


def test_first_and_revised_estimates() -> None:
    record = record_with([])
    record.add_plan(PlanRecord(elapsed=1.0, executor_type="process", n_jobs=2, chunksize=8,
                               estimated_speedup=1.4, change_reason="slower items"))
    assert record.first_estimated_speedup == 1.8
    assert record.final_estimated_speedup == 1.4
    assert record.first_plan is record.plans[0] and record.final_plan is record.plans[1]


def test_chunks_past_max_chunks_are_counted_not_kept() -> None:
    record = record_with([chunk(i, 0, i * 0.1, i * 0.1 + 0.05) for i in range(10)],
                         max_chunks=4)
    assert len(record.chunks) == 4
    assert record.chunks_seen == 10 and record.chunks_dropped == 6
    assert record.items_completed == 40


def test_wall_prefers_the_runs_own_clock() -> None:
    record = record_with([chunk(0, 0, 0.0, 0.7)])
    assert record.wall == pytest.approx(0.7)
    record.wall_seconds = 0.9
    assert record.wall == pytest.approx(0.9)


def test_timeline_draws_every_chunk_under_the_cap() -> None:
    record = record_with([chunk(i, i % 2, i * 0.1, i * 0.1 + 0.08) for i in range(20)])
    timeline = views.timeline(record, max_bars=20)
    assert len(timeline.bars) == 20 and timeline.cells == [] and timeline.slice_seconds is None


def test_timeline_aggregates_past_the_cap_but_keeps_failed_and_sampled_bars() -> None:
    chunks = [chunk(0, None, 0.0, 0.05, sampled=True)]
    chunks += [chunk(i, i % 2, 0.1 + (i // 2) * 0.01, 0.1 + (i // 2) * 0.01 + 0.01)
               for i in range(1, 2001)]
    record = record_with(chunks)
    index = record.add_error(ErrorRecord("KeyError", "k", chunk_id=2001))
    record.add_chunk(chunk(2001, 0, 10.1, 10.2, error=index))
    timeline = views.timeline(record, max_bars=100)
    assert sorted(c.chunk_id for c in timeline.bars) == [0, 2001]
    assert timeline.aggregated_chunks == 2000
    assert sum(cell.chunks for cell in timeline.cells) == 2000
    assert sum(cell.items for cell in timeline.cells) == 8000
    assert all(0.0 <= cell.busy <= 1.0 for cell in timeline.cells)
    # each worker lane was busy back to back for 10 s: its busy share adds up to that
    width = timeline.slice_seconds
    assert width is not None
    busy_lane1 = sum(cell.busy for cell in timeline.cells if cell.lane == 1) * width
    assert busy_lane1 == pytest.approx(10.0, rel=1e-6)
    assert len(timeline.cells) <= 2 * 2000


def test_curves_end_at_the_items_done_and_never_fall() -> None:
    record = record_with([chunk(i, i % 2, i * 0.05, i * 0.05 + 0.1) for i in range(40)])
    curves = views.curves(record, points=50)
    assert len(curves.times) == len(curves.items_done) == len(curves.throughput) == 50
    assert curves.items_done[-1] == 160
    assert all(b >= a for a, b in zip(curves.items_done, curves.items_done[1:], strict=False))
    assert all(v >= 0 for v in curves.throughput)
    assert curves.window_seconds > 0


def test_prediction_runs_from_the_items_done_at_the_decision_to_the_total() -> None:
    record = record_with([chunk(0, None, 0.0, 0.1, size=5, sampled=True)], total_items=105)
    record.plans[0].elapsed = 0.2
    [line] = views.predictions(record)
    assert (line.t0, line.n0, line.t1, line.n1) == (0.2, 5, pytest.approx(2.2), 105)
    record.total_items = None
    assert views.predictions(record) == []


def test_size_distribution_lists_sizes_then_groups_them() -> None:
    few = record_with([chunk(i, 0, i, i + 1, size=s) for i, s in enumerate([5, 20, 20, 40])])
    assert views.size_distribution(few) == [("5", 1), ("20", 2), ("40", 1)]
    assert views.size_stats(few) == (5, 21.25, 20, 40)
    many = record_with([chunk(i, 0, i, i + 1, size=i + 1) for i in range(40)])
    rows = views.size_distribution(many)
    assert rows[0] == ("1", 1) and rows[1] == ("2\u20133", 2)
    assert sum(n for _, n in rows) == 40


def test_efficiency_from_the_run_or_computed() -> None:
    record = record_with([chunk(0, 0, 0.0, 1.0), chunk(1, 1, 0.0, 0.5)])
    record.wall_seconds = 1.0
    assert views.parallel_efficiency(record) == pytest.approx(0.75)
    record.parallel_efficiency = 0.5
    assert views.parallel_efficiency(record) == 0.5


def test_errors_by_type_most_frequent_first() -> None:
    record = record_with([])
    for name in ["KeyError", "ValueError", "ValueError"]:
        record.add_error(ErrorRecord(name, "x"))
    assert views.errors_by_type(record) == [("ValueError", 2), ("KeyError", 1)]
