"""ReportHook and its observer: fed hand-built contexts, as the core delivers them."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from amorsize.hooks import Hook
from amorsize.report import ReportHook, ReportObserver
from tests.report_fixtures import T0, FakeContext, FakeOptimization, play, simulate_run


def test_success_writes_report_and_trace(tmp_path: Path) -> None:
    run = simulate_run(fail=False)
    hook = ReportHook(tmp_path / "run.html", trace_path=tmp_path / "run.json")
    play(hook, run.contexts)
    html = (tmp_path / "run.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "status-success" in html
    assert json.loads((tmp_path / "run.json").read_text())["otherData"]["status"] == "success"
    record = hook.last_record
    assert record is not None and record.status == "success"
    assert len(record.chunks) == run.completed_chunks
    assert record.items_completed == run.total_items
    assert record.first_estimated_speedup == 1.85 and record.final_estimated_speedup == 1.62
    assert [p.change_reason for p in record.plans] == [None, "items take 30 % longer than sampled"]
    assert sorted(tmp_path.iterdir()) == [tmp_path / "run.html", tmp_path / "run.json"]


def test_error_run_records_the_failed_chunk(tmp_path: Path) -> None:
    run = simulate_run()
    hook = ReportHook(tmp_path / "run.html")
    play(hook, run.contexts)
    record = hook.last_record
    assert record is not None and record.status == "error"
    [failed] = [c for c in record.chunks if c.failed]
    assert failed.chunk_id == run.failed_chunk_id
    assert record.errors[failed.error or 0].traceback.startswith("Traceback")  # type: ignore[union-attr]
    assert "status-error" in (tmp_path / "run.html").read_text()


def test_cancelled_run_is_written_too(tmp_path: Path) -> None:
    contexts = simulate_run(fail=False).contexts
    cut = contexts[:8]
    cut.append(FakeContext(event="on_error", timestamp=T0 + 0.5, status="cancelled",
                           error=KeyboardInterrupt(), error_type="KeyboardInterrupt",
                           error_message=""))
    cut.append(FakeContext(event="on_post_execute", timestamp=T0 + 0.55, elapsed_time=0.55,
                           status="cancelled"))
    hook = ReportHook(tmp_path / "run.html")
    play(hook, cut)
    assert hook.last_record is not None and hook.last_record.status == "cancelled"
    html = (tmp_path / "run.html").read_text()
    assert "status-cancelled" in html and "KeyboardInterrupt" in html


def test_each_run_gets_its_own_observer_and_record(tmp_path: Path) -> None:
    hook = ReportHook(tmp_path / "run.html")
    pre = simulate_run().contexts[0]
    first, second = hook.start_run(pre), hook.start_run(replace(pre, execution_id="other"))
    assert isinstance(first, ReportObserver) and first is not second
    assert first.record is not second.record
    assert second.record.identity.execution_id == "other"
    assert isinstance(hook, Hook)


def test_a_report_that_cannot_be_written_is_logged_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    hook = ReportHook(blocker / "run.html", trace_path=tmp_path / "run.json")
    with caplog.at_level(logging.WARNING, logger="amorsize.report"):
        play(hook, simulate_run().contexts)
    assert "could not write" in caplog.text
    assert (tmp_path / "run.json").exists()  # the other file is still written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_observer_never_raises_into_the_run(caplog: pytest.LogCaptureFixture) -> None:
    observer = ReportHook("unused.html").start_run(simulate_run().contexts[0])

    def boom(*_: object) -> None:
        raise RuntimeError("broken record")

    observer.record.add_chunk = boom  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="amorsize.report"):
        observer.on_chunk_complete(FakeContext(event="on_chunk_complete", chunk_id=1))
        observer.on_error(FakeContext(event="on_error", chunk_id=2, error_type="X"))
        observer.on_worker_start(object())  # not a context at all
    assert caplog.text.count("the run goes on") == 2


def test_odd_field_values_do_not_break_the_report(tmp_path: Path) -> None:
    contexts = simulate_run(fail=False, revise=False).contexts
    pre = replace(contexts[0], optimization=None, total_items=None, run_started_at=0.0,
                  estimated_speedup=float("nan"))
    odd = replace(contexts[1], chunk_started_at=None, chunk_ended_at=None, chunk_time=0.01,
                  pid=None, worker_id=None, chunk_start_index=None)
    hook = ReportHook(tmp_path / "run.html", trace_path=tmp_path / "run.json")
    play(hook, [pre, odd, *contexts[2:]])
    record = hook.last_record
    assert record is not None
    assert record.run_started_at == pytest.approx(pre.timestamp - pre.elapsed_time)
    assert record.chunks[0].duration == pytest.approx(0.01)
    assert (tmp_path / "run.html").exists() and (tmp_path / "run.json").exists()



def test_post_execute_writes_once(tmp_path: Path) -> None:
    run = simulate_run(fail=False)
    hook = ReportHook(tmp_path / "run.html")
    observer = play(hook, run.contexts)
    (tmp_path / "run.html").unlink()
    observer.on_post_execute(run.contexts[-1])
    assert not (tmp_path / "run.html").exists()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="path"):
        ReportHook()
    with pytest.raises(ValueError, match="max_bars"):
        ReportHook("r.html", max_bars=0)


def test_predicted_end_is_serial_estimate_over_speedup_for_every_plan() -> None:
    run = simulate_run()
    observer = ReportHook("unused.html").start_run(run.contexts[0])
    first = observer.record.plans[0]
    assert first.predicted_end == pytest.approx(3.4 / 1.85)
    # a revision whose result still carries the first plan's predicted_seconds
    stale = FakeOptimization(chunksize=40, estimated_speedup=1.62, predicted_seconds=1.84)
    observer.on_plan_change(FakeContext(event="on_plan_change", elapsed_time=0.9,
                                        optimization=stale, metadata={"reason": "r"}))
    assert observer.record.plans[1].predicted_end == pytest.approx(3.4 / 1.62)
    # no usable estimate: no line for the revision (the first plan's would mislead)
    unknown = replace(stale, estimated_speedup=float("nan"))
    observer.on_plan_change(FakeContext(event="on_plan_change", elapsed_time=1.0,
                                        optimization=unknown, metadata={"reason": "r"}))
    assert observer.record.plans[2].predicted_end is None
    # a first plan without a serial estimate falls back to predicted_seconds
    pre = replace(run.contexts[0], optimization=replace(stale, serial_seconds_estimate=None))
    assert ReportHook("u.html").start_run(pre).record.plans[0].predicted_end == 1.84
