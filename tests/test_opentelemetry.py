"""OpenTelemetryHook: spans and metrics of real runs, through an in-memory SDK per test."""

from __future__ import annotations

import functools
import json
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

from amorsize import HookContext, HookEvent, HookManager, WorkerDiedError, execute, execute_iter
from amorsize.integrations.opentelemetry import (
    ATTR_CHUNK_SAMPLED,
    ATTR_CHUNK_SPANS_DROPPED,
    ATTR_ERROR_TYPE,
    ATTR_STATUS,
    OpenTelemetryHook,
    configure_tracing,
    figure_attribute,
    traces_endpoint,
)
from amorsize.names import (
    ATTR_CHUNK_ID,
    ATTR_CHUNK_SIZE,
    ATTR_CHUNKSIZE,
    ATTR_EXECUTOR,
    ATTR_FUNCTION,
    ATTR_N_JOBS,
    ATTR_PROCESS_PID,
    ATTR_TOTAL_ITEMS,
    ATTR_WORKER_ID,
    OTEL_METRICS,
    SPAN_CHUNK,
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
    results = execute(spin, range(60), hooks=otel.hook(), executor_type="thread", n_jobs=2)
    assert len(results) == 60

    run = otel.one(SPAN_EXECUTE)
    optimize = otel.one(SPAN_OPTIMIZE)
    assert parent_id(optimize) == run.context.span_id
    assert optimize.start_time == run.start_time
    assert optimize.end_time is not None and run.end_time is not None
    assert optimize.end_time <= run.end_time
    a = attrs(optimize)
    assert a["amorsize.optimize.executor"] == "thread"
    assert a["amorsize.optimize.n_jobs"] == 2
    assert isinstance(a["amorsize.optimize.reason"], str) and a["amorsize.optimize.reason"]
    assert a[figure_attribute("sampled items")] == 5
    assert isinstance(a["amorsize.optimize.mean_item_time_s"], float)
    assert a["amorsize.optimize.mean_item_time_s"] > 0

    chunks = assert_chunks_belong_to(otel, run)
    sizes = {attrs(c)[ATTR_CHUNK_ID]: attrs(c)[ATTR_CHUNK_SIZE] for c in chunks}
    assert sum(sizes.values()) == 60
    sampled = [attrs(c) for c in chunks if attrs(c).get(ATTR_CHUNK_SAMPLED)]
    assert len(sampled) == 1
    assert sampled[0][ATTR_CHUNK_ID] == 0
    assert sampled[0][ATTR_PROCESS_PID] == os.getpid()


def test_figure_names_become_attribute_keys() -> None:
    assert figure_attribute("mean item time (s)") == "amorsize.optimize.mean_item_time_s"
    assert (figure_attribute("pickle+unpickle time (s/item)")
            == "amorsize.optimize.pickle_and_unpickle_time_s_per_item")


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
    results = execute_iter(square, range(100), hooks=otel.hook(), n_jobs=1, chunksize=5)
    assert [next(results) for _ in range(7)] == [x * x for x in range(7)]
    results.close()  # type: ignore[attr-defined]

    run = otel.one(SPAN_EXECUTE)
    assert attrs(run)[ATTR_STATUS] == "cancelled"
    assert run.status.status_code is StatusCode.UNSET
    assert len(exception_events(run)) == 1
    assert not trace.get_current_span().get_span_context().is_valid
    assert otel.points("amorsize.errors") == []


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
        execute(raise_on_13, range(40), hooks=otel.hook(max_chunk_spans=0), n_jobs=1,
                chunksize=2)

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
        execute(square, range(20), hooks=manager, n_jobs=1, chunksize=5)
        assert trace.get_current_span() is request

    run = otel.one(SPAN_EXECUTE)
    assert run.context.trace_id == request.get_span_context().trace_id
    assert parent_id(run) == request.get_span_context().span_id
    # while the run goes on, its span is current: other hooks see its trace
    assert seen == [run.context.span_id] * 4


def test_without_a_caller_span_the_run_is_a_root_span(otel: OTel) -> None:
    execute(square, range(20), hooks=otel.hook(), n_jobs=1, chunksize=5)
    assert otel.one(SPAN_EXECUTE).parent is None
    assert not trace.get_current_span().get_span_context().is_valid


def test_one_hook_serves_concurrent_runs(otel: OTel) -> None:
    hook = otel.hook()
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def job() -> None:
        try:
            barrier.wait(timeout=10)
            execute(nap, range(20), hooks=hook, n_jobs=1, chunksize=2)
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

    execute(square, range(20), hooks=manager, n_jobs=1, chunksize=5)
    with pytest.raises(Boom):
        execute(raise_on_13, range(20), hooks=manager, n_jobs=1, chunksize=5)

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
        execute(raise_on_13, range(40), hooks=hook, n_jobs=1, chunksize=5)

    data = otel.reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    assert set(metrics) == {spec.name for spec in OTEL_METRICS}
    for spec in OTEL_METRICS:
        metric = metrics[spec.name]
        assert metric.unit == spec.unit
        assert metric.description == spec.description
        if spec.kind == "histogram":
            assert all(isinstance(p, HistogramDataPoint) for p in metric.data.data_points)
        else:
            assert isinstance(metric.data, Sum)
            assert metric.data.is_monotonic is (spec.kind == "counter")
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
        execute(square, range(10), hooks=hook, n_jobs=1, chunksize=5)
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        execute(square, range(10), hooks=hook, n_jobs=1, chunksize=5)
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
    """The hook relies on these metadata keys; fail here first if the publisher drops one."""
    seen: dict[HookEvent, HookContext] = {}
    manager = HookManager()

    def keep(ctx: HookContext) -> None:
        seen.setdefault(ctx.event, ctx)

    for event in (HookEvent.PRE_EXECUTE, HookEvent.ON_CHUNK_COMPLETE, HookEvent.POST_EXECUTE):
        manager.register(event, keep)
    execute(square, range(10), hooks=manager, n_jobs=1, chunksize=5)
    assert {"execution_id", "function", "start_time", "optimization_seconds",
            "optimization", "executor_type"} <= set(seen[HookEvent.PRE_EXECUTE].metadata)
    assert {"start_time", "end_time", "pid"} <= set(seen[HookEvent.ON_CHUNK_COMPLETE].metadata)
    assert {"status", "end_time", "actual_speedup"} <= set(seen[HookEvent.POST_EXECUTE].metadata)


def test_chunks_are_recorded_during_a_long_run_not_only_at_its_end(
    otel: OTel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amorsize.integrations.opentelemetry as integration

    monkeypatch.setattr(integration, "FLUSH_SECONDS", 0.0)  # every chunk is "a while later"
    seen_during_run: list[int] = []
    manager = HookManager()
    manager.add(otel.hook())
    # Registered after the hook: runs once the hook has handled the same event.
    manager.register(HookEvent.ON_CHUNK_COMPLETE,
                     lambda ctx: seen_during_run.append(len(otel.spans(SPAN_CHUNK))))
    execute(square, range(40), manager, n_jobs=1, chunksize=10)
    assert seen_during_run == [1, 2, 3, 4]


def test_chunks_waiting_for_a_flush_are_recorded_when_the_run_fails(otel: OTel) -> None:
    manager = HookManager()
    manager.add(otel.hook())
    with pytest.raises(ValueError):
        execute(raise_on_13, range(40), manager, n_jobs=1, chunksize=5)
    chunks = otel.spans(SPAN_CHUNK)
    assert len(chunks) == 3  # chunks 0 and 1 finished, chunk 2 (items 10-14) failed
    failed = [c for c in chunks if c.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1
    assert sum(attrs(c)[ATTR_CHUNK_SIZE] for c in chunks if c not in failed) == 10
