"""OpenTelemetryHook: spans and metrics of real runs, through an in-memory SDK per test."""

from __future__ import annotations

import functools
import json
import math
import multiprocessing.resource_tracker
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from amorsize import (
    Hook,
    HookContext,
    HookEvent,
    HookManager,
    WorkerDiedError,
    execute,
    execute_iter,
)
from amorsize.hooks import RunObserver, hook_error_counts
from amorsize.integrations.opentelemetry import (
    OpenTelemetryHook,
    configure_tracing,
    traces_endpoint,
    without_messages,
)
from amorsize.names import (
    ATTR_CHUNK_ID,
    ATTR_CHUNK_SAMPLED,
    ATTR_CHUNK_SIZE,
    ATTR_CHUNK_SPANS_DROPPED,
    ATTR_CHUNKSIZE,
    ATTR_ERROR_TYPE,
    ATTR_EVENT,
    ATTR_EXCEPTION_STACKTRACE,
    ATTR_EXECUTOR,
    ATTR_FUNCTION,
    ATTR_N_JOBS,
    ATTR_PLAN_REASON,
    ATTR_PLAN_REVISIONS,
    ATTR_PROCESS_PID,
    ATTR_SPEEDUP_ESTIMATED,
    ATTR_STATUS,
    ATTR_TOTAL_ITEMS,
    ATTR_WORKER_ID,
    OTEL_METRICS,
    PLAN_REVISIONS_TOTAL,
    SPAN_CHUNK,
    SPAN_EVENT_PLAN_CHANGE,
    SPAN_EXECUTE,
    SPAN_OPTIMIZE,
    TRACER_NAME,
)
from tests.workloads import (
    Boom,
    exit_on_13,
    nap,
    pid_of,
    raise_on_13,
    sigkill_on_13,
    spin,
    square,
)

# About 2 ms of pure-Python work per item.
spin_2ms = functools.partial(spin, loops=30_000)


@dataclass
class OTel:
    """An in-memory SDK for one test."""

    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def hook(self, **options: Any) -> OpenTelemetryHook:
        return OpenTelemetryHook(self.tracer_provider, self.meter_provider, **options)

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, f"expected one {name} span, got {len(found)}"
        return found[0]

    def points(self, metric: str) -> list[Any]:
        """The data points of one metric (empty if never recorded)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for m in scope_metrics.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[OTel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield OTel(exporter, tracer_provider, reader, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def resource_tracker() -> None:
    """Start multiprocessing's resource tracker now: the first spawn-context pool starts
    it and it outlives the test by design (it is not a worker)."""
    multiprocessing.resource_tracker.ensure_running()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes, loosely typed for the assertions."""
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def exception_events(span: ReadableSpan) -> list[Any]:
    return [e for e in span.events if e.name == "exception"]


def assert_chunks_belong_to(otel: OTel, execute_span: ReadableSpan) -> list[ReadableSpan]:
    """Every chunk span is a child of `execute_span` and inside its time window."""
    chunks = otel.spans(SPAN_CHUNK)
    assert execute_span.start_time is not None and execute_span.end_time is not None
    for chunk in chunks:
        assert chunk.context.trace_id == execute_span.context.trace_id
        assert parent_id(chunk) == execute_span.context.span_id
        assert chunk.start_time is not None and chunk.end_time is not None
        assert execute_span.start_time <= chunk.start_time <= chunk.end_time
        assert chunk.end_time <= execute_span.end_time
    return chunks


# ------------------------------------------------------------------ trace shape


def test_process_run_is_one_trace_with_a_span_per_chunk(otel: OTel,
                                                        no_leftover_children: None) -> None:
    results = execute(spin_2ms, range(120), hooks=otel.hook(), executor_type="process",
                      n_jobs=2, chunksize=4)
    assert results == [spin_2ms(x) for x in range(120)]

    run = otel.one(SPAN_EXECUTE)
    optimize = otel.one(SPAN_OPTIMIZE)
    chunks = assert_chunks_belong_to(otel, run)
    assert run.parent is None
    assert run.instrumentation_scope is not None
    assert run.instrumentation_scope.name == TRACER_NAME
    assert parent_id(optimize) == run.context.span_id
    assert run.attributes is not None
    assert attrs(run)[ATTR_FUNCTION] == "tests.workloads:spin"
    assert attrs(run)[ATTR_N_JOBS] == 2
    assert attrs(run)[ATTR_CHUNKSIZE] == 4
    assert attrs(run)[ATTR_TOTAL_ITEMS] == 120
    assert attrs(run)[ATTR_EXECUTOR] == "process"
    assert attrs(run)[ATTR_STATUS] == "success"
    assert ATTR_CHUNK_SPANS_DROPPED not in run.attributes
    assert run.status.status_code is StatusCode.UNSET

    assert len(chunks) == 30
    found = [attrs(c) for c in chunks]
    assert sorted(a[ATTR_CHUNK_ID] for a in found) == list(range(30))
    assert sum(a[ATTR_CHUNK_SIZE] for a in found) == 120
    pids = {a[ATTR_PROCESS_PID] for a in found}
    assert len(pids) >= 2
    assert os.getpid() not in pids
    assert {a[ATTR_WORKER_ID] for a in found} <= {0, 1}
    assert all(c.status.status_code is StatusCode.UNSET for c in chunks)


def test_sampled_run_has_an_optimize_span_with_figures_and_chunk_zero(otel: OTel) -> None:
    # Automatic mode: the dry run computes the first items in the calling process; a
    # function that waits goes to threads, and those items stay visible as chunk 0.
    decisions: list[HookContext] = []
    manager = HookManager()
    manager.register(HookEvent.PRE_EXECUTE, decisions.append)
    manager.add(otel.hook())
    results = execute(nap, range(200), hooks=manager)
    assert results == list(range(200))
    [decision] = decisions
    assert decision.executor_type == "thread"

    run = otel.one(SPAN_EXECUTE)
    optimize = otel.one(SPAN_OPTIMIZE)
    assert parent_id(optimize) == run.context.span_id
    assert optimize.start_time == run.start_time
    assert optimize.end_time is not None and run.end_time is not None
    assert optimize.end_time <= run.end_time
    a = attrs(optimize)
    assert a["amorsize.optimize.executor"] == "thread"
    assert a["amorsize.optimize.n_jobs"] == decision.n_jobs
    assert isinstance(a["amorsize.optimize.reason"], str) and a["amorsize.optimize.reason"]
    # the typed figures, under their field names
    figures = decision.optimization.figures
    assert a["amorsize.optimize.sampled_items"] == figures.sampled_items >= 1
    assert isinstance(a["amorsize.optimize.mean_item_seconds"], float)
    assert a["amorsize.optimize.mean_item_seconds"] > 0
    for name, figure in figures.values().items():
        assert f"amorsize.optimize.{name}" in a, name
        if isinstance(figure, (bool, int, float, str)):
            assert a[f"amorsize.optimize.{name}"] == figure, name

    chunks = assert_chunks_belong_to(otel, run)
    sizes = {attrs(c)[ATTR_CHUNK_ID]: attrs(c)[ATTR_CHUNK_SIZE] for c in chunks}
    assert sum(sizes.values()) == 200
    sampled = [attrs(c) for c in chunks if attrs(c).get(ATTR_CHUNK_SAMPLED)]
    assert len(sampled) == 1
    assert sampled[0][ATTR_CHUNK_ID] == 0
    assert sampled[0][ATTR_CHUNK_SIZE] == figures.sampled_items
    assert sampled[0][ATTR_PROCESS_PID] == os.getpid()
    assert ATTR_WORKER_ID not in sampled[0]  # the calling process is no worker of the pool


# ------------------------------------------------------------------ failures


def test_raising_function_marks_chunk_and_execute_spans(otel: OTel,
                                                        no_leftover_children: None) -> None:
    with pytest.raises(Boom):
        execute(raise_on_13, range(40), hooks=otel.hook(), executor_type="process",
                n_jobs=2, chunksize=2)

    run = otel.one(SPAN_EXECUTE)
    assert run.status.status_code is StatusCode.ERROR
    assert "Boom" in (run.status.description or "")
    assert attrs(run)[ATTR_STATUS] == "error"
    [event] = exception_events(run)
    assert str((event.attributes or {})["exception.type"]).endswith("Boom")

    chunks = assert_chunks_belong_to(otel, run)
    failed = [c for c in chunks if c.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert attrs(failed[0])[ATTR_CHUNK_ID] == 6  # items 12 and 13
    assert attrs(failed[0])[ATTR_PROCESS_PID] != os.getpid()
    [event] = exception_events(failed[0])
    attributes = event.attributes or {}
    assert attributes["exception.message"] == "item 13 is unlucky"
    stacktrace = str(attributes["exception.stacktrace"])
    assert "Traceback" in stacktrace and "in raise_on_13" in stacktrace

    [errors] = otel.points("amorsize.errors")
    assert dict(errors.attributes) == {ATTR_FUNCTION: "tests.workloads:raise_on_13",
                                       ATTR_ERROR_TYPE: "Boom"}
    assert errors.value == 1


@pytest.mark.parametrize("func", [sigkill_on_13, exit_on_13])
def test_killed_worker_still_yields_an_exported_error_trace(otel: OTel, func: Any,
                                                            no_leftover_children: None) -> None:
    with pytest.raises(WorkerDiedError):
        execute(func, range(40), hooks=otel.hook(), executor_type="process", n_jobs=2,
                chunksize=2)

    run = otel.one(SPAN_EXECUTE)  # ended and exported
    assert run.status.status_code is StatusCode.ERROR
    assert attrs(run)[ATTR_STATUS] == "error"
    [event] = exception_events(run)
    assert str((event.attributes or {})["exception.type"]).endswith("WorkerDiedError")
    for chunk in assert_chunks_belong_to(otel, run):
        assert attrs(chunk)[ATTR_PROCESS_PID] != os.getpid()
        assert chunk.status.status_code is StatusCode.UNSET
    [errors] = otel.points("amorsize.errors")
    assert errors.attributes[ATTR_ERROR_TYPE] == "WorkerDiedError"
    assert otel.points("amorsize.executions.in_progress")[0].value == 0


def test_recycled_workers_lose_no_chunk_span(otel: OTel, resource_tracker: None,
                                             no_leftover_children: None) -> None:
    results = execute(pid_of, range(16), hooks=otel.hook(), executor_type="process",
                      n_jobs=2, chunksize=2, max_tasks_per_child=1)
    pid_of_item = dict(results)

    chunks = assert_chunks_belong_to(otel, otel.one(SPAN_EXECUTE))
    assert len(chunks) == 8
    for chunk in chunks:
        a = attrs(chunk)
        first = 2 * int(a[ATTR_CHUNK_ID])
        assert a[ATTR_PROCESS_PID] == pid_of_item[first] == pid_of_item[first + 1]
    assert len({attrs(c)[ATTR_PROCESS_PID] for c in chunks}) >= 2


def test_cancelled_iteration_ends_the_span_without_error(otel: OTel) -> None:
    results = execute_iter(square, range(100), hooks=otel.hook(), executor_type="serial",
                           chunksize=5)
    assert [next(results) for _ in range(7)] == [x * x for x in range(7)]
    results.close()  # type: ignore[attr-defined]

    run = otel.one(SPAN_EXECUTE)
    assert attrs(run)[ATTR_STATUS] == "cancelled"
    assert run.status.status_code is StatusCode.UNSET
    assert len(exception_events(run)) == 1
    assert not trace.get_current_span().get_span_context().is_valid
    assert otel.points("amorsize.errors") == []


SECRET = "s3cr3t-customer-4711"


def raise_secret_on_13(x: int) -> int:
    """Fail on item 13 with a two-line message holding data that must not leave."""
    if x == 13:
        raise Boom(f"customer record {SECRET}\n{SECRET} again, on a line of its own")
    return x


def span_texts(span: ReadableSpan) -> list[str]:
    """Every text a span exports: status, attributes, events and their attributes."""
    texts = [span.status.description or ""]
    texts += [str(v) for v in (span.attributes or {}).values()]
    for event in span.events:
        texts.append(event.name)
        texts += [str(v) for v in (event.attributes or {}).values()]
    return texts


@pytest.mark.parametrize(("func", "executor_type", "message"), [
    (raise_on_13, "process", "item 13 is unlucky"),
    (raise_secret_on_13, "thread", SECRET),
])
def test_record_exception_messages_false_keeps_messages_in_the_process(
        otel: OTel, func: Any, executor_type: str, message: str,
        no_leftover_children: None) -> None:
    with pytest.raises(Boom, match=message):
        execute(func, range(40), hooks=otel.hook(record_exception_messages=False),
                executor_type=executor_type, n_jobs=2, chunksize=2)

    run = otel.one(SPAN_EXECUTE)
    [failed] = [c for c in assert_chunks_belong_to(otel, run)
                if c.status.status_code is StatusCode.ERROR]
    for span in (run, failed):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "Boom"
        [event] = exception_events(span)
        attributes = dict(event.attributes or {})
        assert "exception.message" not in attributes
        assert attributes["exception.type"] == "Boom"
        stacktrace = str(attributes[ATTR_EXCEPTION_STACKTRACE])
        assert "Traceback (most recent call last):" in stacktrace
        assert f"in {func.__name__}" in stacktrace  # the frames are kept
        assert stacktrace.splitlines()[-1] == "tests.workloads.Boom"  # the type, no message
    for span in otel.exporter.get_finished_spans():
        assert not [text for text in span_texts(span) if message in text], span.name


def test_exception_messages_are_recorded_by_default(otel: OTel) -> None:
    with pytest.raises(Boom):
        execute(raise_secret_on_13, range(40), hooks=otel.hook(), executor_type="thread",
                n_jobs=2, chunksize=2)
    run = otel.one(SPAN_EXECUTE)
    assert SECRET in (run.status.description or "")
    [event] = exception_events(run)
    assert SECRET in str((event.attributes or {})["exception.message"])


# What Python 3.11 prints for an exception group raised from a chained cause, whose
# first member has a three-line message (one line empty) and a note.
GROUP_TRACEBACK = f"""\
RuntimeError: {SECRET}

The above exception was the direct cause of the following exception:

  + Exception Group Traceback (most recent call last):
  |   File "/srv/job.py", line 3, in <module>
  |     outer()
  |   File "/srv/job.py", line 10, in outer
  |     raise ExceptionGroup(title, [error, KeyError(key)]) from RuntimeError(key)
  | ExceptionGroup: group {SECRET} (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/srv/job.py", line 7, in outer
    |     inner()
    |   File "/srv/job.py", line 2, in inner
    |     raise ValueError(message)
    |     ^^^^^^^^^^^^^^^^^^^^^^^^^
    | ValueError: {SECRET}
    | {SECRET} on line two
    |
    | line four: {SECRET}
    | a note with {SECRET}
    +---------------- 2 ----------------
    | KeyError: '{SECRET}'
    +------------------------------------
"""


def test_without_messages_cuts_every_message_line_and_keeps_the_structure() -> None:
    assert GROUP_TRACEBACK.count(SECRET) == 7
    cut = without_messages(GROUP_TRACEBACK)
    assert SECRET not in cut
    assert cut.splitlines() == [
        "RuntimeError",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "  + Exception Group Traceback (most recent call last):",
        '  |   File "/srv/job.py", line 3, in <module>',
        "  |     outer()",
        '  |   File "/srv/job.py", line 10, in outer',
        "  |     raise ExceptionGroup(title, [error, KeyError(key)]) from RuntimeError(key)",
        "  | ExceptionGroup",
        "  +-+---------------- 1 ----------------",
        "    | Traceback (most recent call last):",
        '    |   File "/srv/job.py", line 7, in outer',
        "    |     inner()",
        '    |   File "/srv/job.py", line 2, in inner',
        "    |     raise ValueError(message)",
        "    |     ^^^^^^^^^^^^^^^^^^^^^^^^^",
        "    | ValueError",
        "    |",
        "    +---------------- 2 ----------------",
        "    | KeyError",
        "    +------------------------------------",
    ]
    plain = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
             "KeyboardInterrupt")
    assert without_messages(plain) == plain


def test_record_exception_messages_is_validated() -> None:
    with pytest.raises(TypeError, match="record_exception_messages"):
        OpenTelemetryHook(record_exception_messages="no")  # type: ignore[arg-type]


# ------------------------------------------------------------------ plan changes


def test_plan_changes_are_events_on_the_execute_span(otel: OTel) -> None:
    plans: list[tuple[str, int, int, str]] = []
    manager = HookManager()
    manager.register(HookEvent.ON_PLAN_CHANGE, lambda ctx: plans.append(
        (ctx.executor_type, ctx.n_jobs, ctx.chunksize, ctx.metadata["reason"])))
    manager.add(otel.hook())
    # threads fixed, no chunk size: the measured task size is published as a plan change
    execute(spin, range(200), hooks=manager, executor_type="thread", n_jobs=2)
    assert plans, "the run revised no plan"

    run = otel.one(SPAN_EXECUTE)
    events = [e for e in run.events if e.name == SPAN_EVENT_PLAN_CHANGE]
    assert [(e.attributes[ATTR_EXECUTOR], e.attributes[ATTR_N_JOBS],  # type: ignore[index]
             e.attributes[ATTR_CHUNKSIZE], e.attributes[ATTR_PLAN_REASON])  # type: ignore[index]
            for e in events] == plans
    assert all(run.start_time <= e.timestamp <= run.end_time for e in events)  # type: ignore[operator]
    assert all(isinstance(e.attributes.get(ATTR_SPEEDUP_ESTIMATED, 0.0), float)  # type: ignore[union-attr]
               for e in events)
    assert attrs(run)[ATTR_PLAN_REVISIONS] == len(plans)
    [revisions] = otel.points("amorsize.plan.revisions")
    assert revisions.value == len(plans)


def test_a_run_without_plan_changes_has_no_revision_events(otel: OTel) -> None:
    execute(spin, range(40), hooks=otel.hook(), executor_type="thread", n_jobs=2, chunksize=5)
    run = otel.one(SPAN_EXECUTE)
    assert [e for e in run.events if e.name == SPAN_EVENT_PLAN_CHANGE] == []
    assert ATTR_PLAN_REVISIONS not in attrs(run)


# ------------------------------------------------------------------ the chunk-span cap


def test_chunk_spans_are_capped_and_the_rest_counted(otel: OTel) -> None:
    execute(square, range(50), hooks=otel.hook(max_chunk_spans=3), executor_type="thread",
            n_jobs=2, chunksize=5)

    run = otel.one(SPAN_EXECUTE)
    assert len(assert_chunks_belong_to(otel, run)) == 3
    assert attrs(run)[ATTR_CHUNK_SPANS_DROPPED] == 7
    assert otel.points("amorsize.chunks.processed")[0].value == 10
    assert otel.points("amorsize.items.processed")[0].value == 50


def test_a_failed_chunk_is_traced_beyond_the_cap(otel: OTel) -> None:
    with pytest.raises(Boom):
        execute(raise_on_13, range(40), hooks=otel.hook(max_chunk_spans=0),
                executor_type="serial", chunksize=2)

    run = otel.one(SPAN_EXECUTE)
    [failed] = assert_chunks_belong_to(otel, run)
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)[ATTR_CHUNK_ID] == 6
    assert attrs(run)[ATTR_CHUNK_SPANS_DROPPED] == 6


def test_max_chunk_spans_is_validated() -> None:
    with pytest.raises(ValueError, match="max_chunk_spans"):
        OpenTelemetryHook(max_chunk_spans=-1)


# ------------------------------------------------------------------ context


def test_the_callers_span_is_the_parent_and_is_current_again_after(otel: OTel) -> None:
    seen: list[int] = []
    manager = HookManager()
    manager.add(otel.hook())
    manager.register(HookEvent.ON_CHUNK_COMPLETE, lambda ctx: seen.append(
        trace.get_current_span().get_span_context().span_id))
    tracer = otel.tracer_provider.get_tracer("caller")

    with tracer.start_as_current_span("handle request") as request:
        execute(square, range(20), hooks=manager, executor_type="serial", chunksize=5)
        assert trace.get_current_span() is request

    run = otel.one(SPAN_EXECUTE)
    assert run.context.trace_id == request.get_span_context().trace_id
    assert parent_id(run) == request.get_span_context().span_id
    # while the run goes on, its span is current: other hooks see its trace
    assert seen == [run.context.span_id] * 4


def test_without_a_caller_span_the_run_is_a_root_span(otel: OTel) -> None:
    execute(square, range(20), hooks=otel.hook(), executor_type="serial", chunksize=5)
    assert otel.one(SPAN_EXECUTE).parent is None
    assert not trace.get_current_span().get_span_context().is_valid


def test_one_hook_serves_concurrent_runs(otel: OTel) -> None:
    hook = otel.hook()
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def job() -> None:
        try:
            barrier.wait(timeout=10)
            execute(nap, range(20), hooks=hook, executor_type="serial", chunksize=2)
            assert not trace.get_current_span().get_span_context().is_valid
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures

    runs = otel.spans(SPAN_EXECUTE)
    assert len(runs) == 2
    assert runs[0].context.trace_id != runs[1].context.trace_id
    for run in runs:
        mine = [c for c in otel.spans(SPAN_CHUNK) if parent_id(c) == run.context.span_id]
        assert sorted(attrs(c)[ATTR_CHUNK_ID] for c in mine) == list(range(10))
    assert otel.points("amorsize.executions.in_progress")[0].value == 0


def test_unsampled_runs_record_no_span_and_raise_nothing() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    manager = HookManager()
    manager.add(OpenTelemetryHook(provider, meters))

    execute(square, range(20), hooks=manager, executor_type="serial", chunksize=5)
    with pytest.raises(Boom):
        execute(raise_on_13, range(20), hooks=manager, executor_type="serial", chunksize=5)

    assert exporter.get_finished_spans() == ()
    assert set(manager.get_stats()["error_counts"].values()) == {0}
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "amorsize.executions" in names
    provider.shutdown()
    meters.shutdown()


# ------------------------------------------------------------------ metrics


def test_metrics_have_the_fixed_names_units_and_values(otel: OTel) -> None:
    hook = otel.hook()
    execute(square, range(30), hooks=hook, executor_type="thread", n_jobs=2, chunksize=5)
    with pytest.raises(Boom):
        execute(raise_on_13, range(40), hooks=hook, executor_type="serial", chunksize=5)

    data = otel.reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    # every spec but plan revisions (chunk size and executor fixed: no plan changed)
    recorded = [spec for spec in OTEL_METRICS if spec.name != PLAN_REVISIONS_TOTAL]
    assert set(metrics) == {spec.otel_name for spec in recorded}
    for spec in recorded:
        metric = metrics[str(spec.otel_name)]
        assert metric.unit == spec.unit
        assert metric.description == spec.documentation
        kind = spec.otel_instrument
        if kind == "histogram":
            assert all(isinstance(p, HistogramDataPoint) for p in metric.data.data_points)
            bounds = [b for b in spec.buckets if math.isfinite(b)]
            assert all(list(p.explicit_bounds) == bounds for p in metric.data.data_points)
        elif kind == "gauge":
            assert isinstance(metric.data, Gauge)
        else:
            assert isinstance(metric.data, Sum)
            assert metric.data.is_monotonic is (kind == "counter")
            assert all(isinstance(p, NumberDataPoint) for p in metric.data.data_points)

    ok, bad = "tests.workloads:square", "tests.workloads:raise_on_13"

    def by_function(name: str) -> dict[Any, Any]:
        return {tuple(sorted(p.attributes.items())): p for p in otel.points(name)}

    def key(function: str, **extra: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({ATTR_FUNCTION: function, **extra}.items()))

    items = by_function("amorsize.items.processed")
    assert items[key(ok)].value == 30
    assert items[key(bad)].value == 10  # two chunks of 5 before item 13
    assert by_function("amorsize.chunks.processed")[key(ok)].value == 6
    assert by_function("amorsize.chunk.duration")[key(ok)].count == 6
    executions = by_function("amorsize.executions")
    assert executions[key(ok, **{ATTR_STATUS: "success"})].value == 1
    assert executions[key(bad, **{ATTR_STATUS: "error"})].value == 1
    assert by_function("amorsize.errors")[key(bad, **{ATTR_ERROR_TYPE: "Boom"})].value == 1
    durations = by_function("amorsize.execution.duration")
    assert durations[key(ok)].count == durations[key(bad)].count == 1
    assert durations[key(ok)].sum > 0
    assert by_function("amorsize.optimization.duration")[key(ok)].count == 1
    assert {p.value for p in otel.points("amorsize.executions.in_progress")} == {0}
    # hook errors: the process-wide count, read when the metrics are collected
    hook_errors = {p.attributes[ATTR_EVENT]: p.value for p in otel.points("amorsize.hook.errors")}
    assert hook_errors == hook_error_counts()


# ------------------------------------------------------------------ set-up, imports


def test_collector_base_urls_get_the_traces_path() -> None:
    assert traces_endpoint("http://jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert traces_endpoint("http://jaeger:4318/") == "http://jaeger:4318/v1/traces"
    assert traces_endpoint("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_configure_tracing_validates_timeouts() -> None:
    with pytest.raises(ValueError, match="export_timeout"):
        configure_tracing(export_timeout=0, set_global=False)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        configure_tracing(shutdown_timeout=-1.0, set_global=False)


def test_service_name_comes_from_the_argument_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    names = []
    for argument in ("from-argument", None):
        provider = configure_tracing(argument, "http://127.0.0.1:9", set_global=False)
        names.append(provider.resource.attributes["service.name"])
        provider.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    provider = configure_tracing(endpoint="http://127.0.0.1:9", set_global=False)
    names.append(provider.resource.attributes["service.name"])
    provider.shutdown()
    assert names == ["from-argument", "from-env", "amorsize"]


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], capture_output=True,
                          text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_without_opentelemetry_the_module_imports_and_the_hook_names_the_extra() -> None:
    done = run_script("""
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        import amorsize.integrations.opentelemetry as otel
        for make in (otel.OpenTelemetryHook, otel.configure_tracing):
            try:
                make()
            except ImportError as exc:
                print(exc)
        """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all('pip install "amorsize[otel]"' in line for line in lines)


def test_global_providers_are_looked_up_at_each_run() -> None:
    done = run_script("""
        import json
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter)
        from amorsize import execute
        from amorsize.integrations.opentelemetry import OpenTelemetryHook
        from tests.workloads import square

        hook = OpenTelemetryHook()  # before any provider is set
        execute(square, range(10), hooks=hook, executor_type="serial", chunksize=5)
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        execute(square, range(10), hooks=hook, executor_type="serial", chunksize=5)
        data = reader.get_metrics_data()
        print(json.dumps({
            "spans": sorted(s.name for s in exporter.get_finished_spans()),
            "executions": [p.value for rm in data.resource_metrics for sm in rm.scope_metrics
                           for m in sm.metrics if m.name == "amorsize.executions"
                           for p in m.data.data_points],
        }))
        """)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["spans"] == sorted([SPAN_CHUNK, SPAN_CHUNK, SPAN_EXECUTE, SPAN_OPTIMIZE])
    assert seen["executions"] == [1]


def test_context_of_hook_events_carries_what_the_hook_reads() -> None:
    """The hook relies on these typed fields; fail here first if the publisher drops one."""
    seen: dict[HookEvent, HookContext] = {}
    manager = HookManager()

    def keep(ctx: HookContext) -> None:
        seen.setdefault(ctx.event, ctx)

    for event in (HookEvent.PRE_EXECUTE, HookEvent.ON_CHUNK_COMPLETE, HookEvent.POST_EXECUTE):
        manager.register(event, keep)
    execute(square, range(10), hooks=manager, executor_type="serial", chunksize=5)
    pre = seen[HookEvent.PRE_EXECUTE]
    assert pre.execution_id and pre.function == "tests.workloads:square"
    assert pre.executor_type == "serial" and pre.run_started_at > 0
    assert pre.optimization is not None
    assert pre.metadata["optimization_seconds"] >= 0
    chunk = seen[HookEvent.ON_CHUNK_COMPLETE]
    assert chunk.execution_id == pre.execution_id
    assert chunk.chunk_started_at is not None and chunk.chunk_ended_at is not None
    assert pre.run_started_at <= chunk.chunk_started_at <= chunk.chunk_ended_at
    assert chunk.pid == os.getpid() and chunk.chunk_id == 0 and chunk.chunk_size == 5
    post = seen[HookEvent.POST_EXECUTE]
    assert post.status == "success" and post.execution_id == pre.execution_id
    assert post.metadata["end_time"] >= chunk.chunk_ended_at
    assert post.actual_speedup is not None and post.metadata["chunks_completed"] == 2


class ChunkSpanCounter(Hook):
    """Counts the finished chunk spans from an observer: listed after the OpenTelemetry
    hook, its observer runs once that hook has handled the same event."""

    def __init__(self, otel: OTel) -> None:
        self.otel = otel
        self.counts: list[int] = []

    def start_run(self, ctx: HookContext) -> RunObserver:
        counter = self

        class Observer(RunObserver):
            def on_chunk_complete(self, ctx: HookContext) -> None:
                counter.counts.append(len(counter.otel.spans(SPAN_CHUNK)))

        return Observer()


def test_chunks_are_recorded_during_a_long_run_not_only_at_its_end(
    otel: OTel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amorsize.integrations.opentelemetry as integration

    monkeypatch.setattr(integration, "FLUSH_SECONDS", 0.0)  # every chunk is "a while later"
    counter = ChunkSpanCounter(otel)
    manager = HookManager()
    manager.add(otel.hook())
    manager.add(counter)
    execute(square, range(40), manager, executor_type="serial", chunksize=10)
    assert counter.counts == [1, 2, 3, 4]


def test_chunks_waiting_for_a_flush_are_recorded_when_the_run_fails(otel: OTel) -> None:
    manager = HookManager()
    manager.add(otel.hook())
    with pytest.raises(ValueError):
        execute(raise_on_13, range(40), manager, executor_type="serial", chunksize=5)
    chunks = otel.spans(SPAN_CHUNK)
    assert len(chunks) == 3  # chunks 0 and 1 finished, chunk 2 (items 10-14) failed
    failed = [c for c in chunks if c.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1
    assert sum(attrs(c)[ATTR_CHUNK_SIZE] for c in chunks if c not in failed) == 10
