"""The Chrome trace: parses, one complete event per chunk at worker-measured times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amorsize.report import ReportHook, render_chrome_trace
from tests.report_fixtures import CALLER_PID, T0, play, simulate_run


@pytest.fixture
def traced(tmp_path: Path) -> tuple[dict, list]:
    run = simulate_run(workers=3, chunks=30)
    trace_path = tmp_path / "run.json"
    play(ReportHook(trace_path=trace_path), run.contexts)
    return json.loads(trace_path.read_text()), run.contexts


def test_one_complete_event_per_chunk_at_the_worker_measured_times(traced) -> None:
    trace, contexts = traced
    chunks = [c for c in contexts if c.chunk_id is not None]  # finished and failed tasks
    events = [e for e in trace["traceEvents"] if e["ph"] == "X" and "chunk" in e["cat"]]
    assert len(events) == len(chunks)
    by_id = {e["args"]["chunk_id"]: e for e in events}
    for ctx in chunks:
        event = by_id[ctx.chunk_id]
        assert event["ts"] == pytest.approx((ctx.chunk_started_at - T0) * 1e6, abs=0.01)
        assert event["dur"] == pytest.approx((ctx.chunk_ended_at - ctx.chunk_started_at) * 1e6,
                                             abs=0.01)
        assert event["args"]["items"] == ctx.chunk_size
        assert event["args"]["worker_pid"] == ctx.pid


def test_one_thread_per_worker_plus_the_calling_process(traced) -> None:
    trace, _ = traced
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert sorted(names.values()) == sorted([
        "execute()", f"calling process (pid {CALLER_PID})",
        *(f"worker {w} (pid {CALLER_PID + 1 + w})" for w in range(3))])
    chunk_events = [e for e in trace["traceEvents"] if e["ph"] == "X" and "chunk" in e["cat"]]
    # each chunk sits on the thread named after its worker
    for event in chunk_events:
        worker = event["args"]["worker_id"]
        expected = (f"calling process (pid {CALLER_PID})" if worker is None
                    else f"worker {worker} (pid {CALLER_PID + 1 + worker})")
        assert names[event["tid"]] == expected


def test_sampled_and_failed_chunks_are_marked(traced) -> None:
    trace, contexts = traced
    events = [e for e in trace["traceEvents"] if e["ph"] == "X" and "chunk" in e["cat"]]
    sampled = [e for e in events if "sampled" in e["cat"].split(",")]
    failed = [e for e in events if "failed" in e["cat"].split(",")]
    assert [e["args"]["chunk_id"] for e in sampled] == [0]
    [failure] = failed
    assert failure["args"]["error_type"] == "ValueError"
    assert "Traceback" in failure["args"]["traceback"]
    assert trace["otherData"]["status"] == "error"
    assert trace["otherData"]["run_started_at"] == T0


def test_plan_revision_is_an_instant_event_and_events_nest(traced) -> None:
    trace, _ = traced
    revisions = [e for e in trace["traceEvents"] if e.get("name") == "plan revised"]
    assert len(revisions) == 1 and revisions[0]["ph"] == "i"
    # complete events on one thread never overlap partially (Perfetto needs nesting)
    by_tid: dict[int, list[tuple[float, float]]] = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            by_tid.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_tid.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 1e-3


def test_render_is_strict_json_without_nan() -> None:
    run = simulate_run(fail=False, revise=False)
    hook = ReportHook(trace_path="unused.json")
    observer = play(hook, run.contexts[:-1])
    observer.record.first_estimated_speedup = float("nan")
    observer.record.plans[0].estimated_speedup = float("inf")
    text = render_chrome_trace(observer.record)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in trace"))
