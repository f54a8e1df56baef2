"""Unit tests of amorsize.integrations.prometheus: real execute() runs, a fresh
CollectorRegistry per test, values read back with get_sample_value."""

from __future__ import annotations

import gc
import http.client
import importlib
import logging
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text

import amorsize
from amorsize import Hook, HookContext, HookEvent, HookManager, execute, execute_iter, names
from amorsize.hooks import RunObserver, hook_error_counts
from amorsize.integrations.prometheus import (
    PrometheusHook,
    start_metrics_server,
)
from tests.servers import free_port, require_binary
from tests.workloads import Boom, nap, raise_on_13, spin, square, tag

SQUARE = names.function_label(square)
SPIN = names.function_label(spin)
RAISE = names.function_label(raise_on_13)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test."""
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> Optional[float]:
    """get_sample_value with labels as keywords."""
    return registry.get_sample_value(name, labels)


def tracer(sampled: bool = True) -> trace.Tracer:
    """A real OpenTelemetry SDK tracer (not installed globally)."""
    provider = TracerProvider() if sampled else TracerProvider(sampler=ALWAYS_OFF)
    return provider.get_tracer("tests.prometheus")


class SpanAsCurrentHook(Hook):
    """Acts like the OpenTelemetry integration: a span current from PRE to POST."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.span: Optional[trace.Span] = None
        self._token: Any = None

    def callbacks(self) -> dict[HookEvent, Any]:
        return {HookEvent.PRE_EXECUTE: self.pre, HookEvent.POST_EXECUTE: self.post}

    def pre(self, ctx: HookContext) -> None:
        self.span = self.tracer.start_span(names.SPAN_EXECUTE)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))

    def post(self, ctx: HookContext) -> None:
        otel_context.detach(self._token)
        assert self.span is not None
        self.span.end()


def trace_hex(span: trace.Span) -> str:
    return trace.format_trace_id(span.get_span_context().trace_id)


# ---------------------------------------------------------------- the metric contract


def test_exposed_names_types_and_labels_match_names_py(registry: CollectorRegistry) -> None:
    execute(spin, range(40), hooks=PrometheusHook(registry))  # sampled: an estimate
    with pytest.raises(Boom):
        execute(raise_on_13, range(20), hooks=PrometheusHook(registry), n_jobs=1, chunksize=2)
    families = {f.name: f for f in text_string_to_metric_families(
        generate_openmetrics(registry).decode())}
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created")}
    for spec in names.PROMETHEUS_METRICS:
        base = spec.name[: -len("_total")] if spec.type == "counter" else spec.name
        family = families.pop(base, None)
        assert family is not None, f"{spec.name} is not exposed"
        assert family.type == spec.type, spec.name
        assert family.samples, f"{spec.name} has no samples"
        for sample in family.samples:
            assert sample.name in {base + s for s in suffixes[spec.type]}, sample.name
            assert set(sample.labels) - {"le"} == set(spec.labels), sample
        series = {s.name for s in family.samples}
        assert (spec.name if spec.type != "histogram" else spec.name + "_bucket") in series
    assert not families, f"metrics not in names.py: {sorted(families)}"
    text = generate_latest(registry).decode()
    for spec in names.PROMETHEUS_METRICS:
        assert f"\n{spec.name}" in text or f"\n{spec.name}_bucket" in text, spec.name


def test_build_info_is_one_with_the_version(registry: CollectorRegistry) -> None:
    PrometheusHook(registry)
    assert value(registry, names.BUILD_INFO, version=amorsize.__version__) == 1.0


def test_two_hooks_on_one_registry_share_the_metrics(registry: CollectorRegistry) -> None:
    first, second = PrometheusHook(registry), PrometheusHook(registry)
    assert first.metrics is second.metrics
    execute(square, range(30), hooks=first, n_jobs=1, chunksize=7)
    execute(square, range(30), hooks=second, n_jobs=1, chunksize=7)
    assert value(registry, names.ITEMS_PROCESSED_TOTAL, function=SQUARE) == 60
    assert value(registry, names.EXECUTIONS_TOTAL, function=SQUARE, status="success") == 2


def test_the_default_registry_is_used_only_when_none_is_given() -> None:
    import prometheus_client

    default = PrometheusHook()
    assert default.registry is prometheus_client.REGISTRY
    assert PrometheusHook().metrics is default.metrics
    own = CollectorRegistry()
    assert PrometheusHook(own).registry is own and PrometheusHook(own).metrics is not (
        default.metrics)


def test_a_foreign_metric_with_an_amorsize_name_is_a_clear_error(
        registry: CollectorRegistry) -> None:
    from prometheus_client import Gauge

    Gauge(names.WORKERS, "someone else's", registry=registry)
    with pytest.raises(ValueError, match="already has a metric"):
        PrometheusHook(registry)
    # nothing of ours was left registered half-way
    assert value(registry, names.BUILD_INFO, version=amorsize.__version__) is None


# ---------------------------------------------------------------- real runs


@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
def test_items_chunks_and_gauges_after_a_run(
    registry: CollectorRegistry, executor_type: str, no_leftover_children: None
) -> None:
    n_jobs = 1 if executor_type == "serial" else 2
    data = list(range(200))
    results = execute(spin, data, hooks=PrometheusHook(registry), n_jobs=n_jobs,
                      executor_type=executor_type, chunksize=None if n_jobs > 1 else 9)
    assert results == [spin(x) for x in data]
    assert value(registry, names.ITEMS_PROCESSED_TOTAL, function=SPIN) == len(data)
    chunks = value(registry, names.CHUNKS_PROCESSED_TOTAL, function=SPIN)
    assert chunks is not None and chunks >= 2
    assert value(registry, names.CHUNK_DURATION_SECONDS + "_count", function=SPIN) == chunks
    assert value(registry, names.EXECUTIONS_TOTAL, function=SPIN, status="success") == 1
    assert value(registry, names.EXECUTIONS_TOTAL, function=SPIN, status="error") == 0
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=SPIN) == 0
    assert value(registry, names.EXECUTION_DURATION_SECONDS + "_count", function=SPIN) == 1
    assert value(registry, names.WORKERS, function=SPIN) == n_jobs
    chunksize = value(registry, names.CHUNKSIZE, function=SPIN)
    assert chunksize is not None and chunksize >= 1
    throughput = value(registry, names.THROUGHPUT_ITEMS_PER_SECOND, function=SPIN)
    assert throughput is not None and throughput > 0
    actual = value(registry, names.SPEEDUP_ACTUAL, function=SPIN)
    efficiency = value(registry, names.PARALLEL_EFFICIENCY_RATIO, function=SPIN)
    assert actual is not None and actual > 0
    assert efficiency is not None and efficiency > 0
    assert value(registry, names.OPTIMIZATION_DURATION_SECONDS + "_count", function=SPIN) == 1


class ObserverProbe(Hook):
    """Calls `probe(ctx)` from a run observer on ON_CHUNK_COMPLETE and POST_EXECUTE: an
    observer listed after PrometheusHook sees the metrics as that hook left them."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe

    def start_run(self, ctx: HookContext) -> RunObserver:
        probe = self.probe

        class Observer(RunObserver):
            def on_chunk_complete(self, ctx: HookContext) -> None:
                probe(ctx)

            def on_post_execute(self, ctx: HookContext) -> None:
                probe(ctx)

        return Observer()


SPEEDUP_GAUGES = (names.SPEEDUP_ESTIMATED, names.SPEEDUP_ACTUAL, names.PARALLEL_EFFICIENCY_RATIO)


def test_speedup_gauges_are_set_together_at_the_end_of_a_successful_run(
        registry: CollectorRegistry) -> None:
    during: list[tuple[Optional[float], ...]] = []
    final: list[HookContext] = []

    def probe(ctx: HookContext) -> None:
        if ctx.event is HookEvent.POST_EXECUTE:
            final.append(ctx)
        else:
            during.append(tuple(value(registry, g, function=SPIN) for g in SPEEDUP_GAUGES))

    execute(spin, range(200), hooks=[PrometheusHook(registry), ObserverProbe(probe)],
            executor_type="thread", n_jobs=2)
    assert during and set(during) == {(None, None, None)}  # nothing while running
    [ctx] = final
    assert ctx.status == "success"
    for gauge, figure in zip(SPEEDUP_GAUGES, (ctx.estimated_speedup, ctx.actual_speedup,
                                              ctx.parallel_efficiency), strict=True):
        expected = figure if figure is not None and math.isfinite(figure) else None
        assert value(registry, gauge, function=SPIN) == expected, gauge
    actual = value(registry, names.SPEEDUP_ACTUAL, function=SPIN)
    assert actual is not None and actual > 0


def test_a_failed_run_leaves_the_speedup_gauges_alone(registry: CollectorRegistry) -> None:
    with pytest.raises(Boom):
        execute(raise_on_13, range(40), hooks=PrometheusHook(registry),
                executor_type="serial", chunksize=2)
    for gauge in SPEEDUP_GAUGES:
        assert value(registry, gauge, function=RAISE) is None, gauge
    assert value(registry, names.EXECUTIONS_TOTAL, function=RAISE, status="error") == 1


def test_a_raising_function_counts_an_error_by_class_name(registry: CollectorRegistry) -> None:
    with pytest.raises(Boom):
        execute(raise_on_13, range(60), hooks=PrometheusHook(registry),
                executor_type="thread", n_jobs=2, chunksize=4)
    assert value(registry, names.ERRORS_TOTAL, function=RAISE, error_type="Boom") == 1
    assert value(registry, names.EXECUTIONS_TOTAL, function=RAISE, status="error") == 1
    assert value(registry, names.EXECUTIONS_TOTAL, function=RAISE, status="success") == 0
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=RAISE) == 0
    items = value(registry, names.ITEMS_PROCESSED_TOTAL, function=RAISE)
    assert items is not None and items < 60
    text = generate_latest(registry).decode()
    assert "unlucky" not in text  # the error message never becomes a label


def test_a_cancelled_run_is_counted_as_cancelled_not_as_an_error(
        registry: CollectorRegistry) -> None:
    results = execute_iter(square, range(1000), hooks=PrometheusHook(registry),
                           n_jobs=1, chunksize=10)
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    results.close()  # type: ignore[attr-defined]
    assert value(registry, names.EXECUTIONS_TOTAL, function=SQUARE, status="cancelled") == 1
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=SQUARE) == 0
    assert value(registry, names.ERRORS_TOTAL, function=SQUARE,
                 error_type="ExecutionCancelled") is None


def test_items_chunks_and_throughput_move_during_the_run(registry: CollectorRegistry) -> None:
    seen: list[tuple[float, float, float, float]] = []

    def probe(ctx: HookContext) -> None:
        if ctx.event is HookEvent.ON_CHUNK_COMPLETE:
            seen.append((
                float(ctx.items_completed),
                value(registry, names.ITEMS_PROCESSED_TOTAL, function=SPIN) or 0.0,
                value(registry, names.CHUNKS_PROCESSED_TOTAL, function=SPIN) or 0.0,
                value(registry, names.THROUGHPUT_ITEMS_PER_SECOND, function=SPIN) or 0.0,
            ))

    execute(spin, range(120), hooks=[PrometheusHook(registry), ObserverProbe(probe)],
            executor_type="thread", n_jobs=2, chunksize=10)
    assert len(seen) == 12
    for index, (completed, items, chunks, throughput) in enumerate(seen, start=1):
        assert items == completed  # the counter had moved when the chunk was reported
        assert chunks == index
        assert throughput > 0


def test_one_hook_serves_concurrent_runs(registry: CollectorRegistry) -> None:
    hook = PrometheusHook(registry)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            assert execute(square, range(50), hooks=hook, n_jobs=1, chunksize=5) == [
                x * x for x in range(50)]
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert value(registry, names.ITEMS_PROCESSED_TOTAL, function=SQUARE) == 200
    assert value(registry, names.EXECUTIONS_TOTAL, function=SQUARE, status="success") == 4
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=SQUARE) == 0


# ---------------------------------------------------------------- hook errors


class Raising(Hook):
    """Raises on the given events."""

    def __init__(self, *events: HookEvent) -> None:
        self.events = events

    def callbacks(self) -> dict[HookEvent, Any]:
        return {event: self.fail for event in self.events}

    def fail(self, ctx: HookContext) -> None:
        raise RuntimeError("a broken hook")


def hook_errors(registry: CollectorRegistry) -> dict[str, float]:
    """amorsize_hook_errors_total per event, as the registry exposes it now."""
    counts = {}
    for event in HookEvent:
        found = value(registry, names.HOOK_ERRORS_TOTAL, event=event.value)
        assert found is not None, event
        counts[event.value] = found
    return counts


def added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The events whose count grew, and by how much."""
    return {event: after[event] - before[event] for event in after
            if after[event] != before[event]}


def test_hook_errors_are_the_process_wide_count_read_at_scrape(
        registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="amorsize.hooks")
    other = CollectorRegistry()
    PrometheusHook(other)
    manager = HookManager()
    manager.add(PrometheusHook(registry))
    manager.add(PrometheusHook(registry))  # same metric set: must not count twice
    before = hook_errors(registry)
    assert hook_errors(other) == before == hook_error_counts()
    manager.add(Raising(HookEvent.ON_CHUNK_COMPLETE, HookEvent.POST_EXECUTE))
    for _ in range(2):
        assert execute(square, range(40), hooks=manager, executor_type="serial",
                       chunksize=10) == [x * x for x in range(40)]
    counts = manager.get_stats()["error_counts"]
    assert counts["on_chunk_complete"] == 8 and counts["post_execute"] == 2
    assert added(before, hook_errors(registry)) == {"on_chunk_complete": 8, "post_execute": 2}
    # one count for the process: a registry the runs never saw reads the same
    assert hook_errors(other) == hook_errors(registry) == hook_error_counts()


def test_hook_errors_after_this_hook_in_post_execute_are_counted(
        registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="amorsize.hooks")
    hook = PrometheusHook(registry)
    before = hook_errors(registry)
    # a list of hooks, no manager: the failures are counted all the same
    execute(square, range(10), hooks=[hook, Raising(HookEvent.POST_EXECUTE)],
            executor_type="serial", chunksize=5)
    assert added(before, hook_errors(registry)) == {"post_execute": 1}


class TrackedPrometheusHook(PrometheusHook):
    """A PrometheusHook that keeps a weak reference to each run's observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.observers: list[weakref.ref[RunObserver]] = []

    def start_run(self, ctx: HookContext) -> RunObserver:
        observer = super().start_run(ctx)
        self.observers.append(weakref.ref(observer))
        return observer


def scrape_hook_errors(url: str) -> dict[str, float]:
    """amorsize_hook_errors_total per event, over HTTP from a /metrics server."""
    _, body = fetch(url)
    return {s.labels["event"]: s.value for family in parse_text(body)
            for s in family.samples if s.name == names.HOOK_ERRORS_TOTAL}


def test_failing_runs_through_a_shared_hook_keep_no_manager_or_run_alive(
        registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13: each failed run's traceback cycle held its manager, and the hook-error
    collector kept and rescanned every manager. Now nothing outlives its run."""
    caplog.set_level(logging.CRITICAL, logger="amorsize.hooks")  # no records holding tracebacks
    runs = 100
    hook = TrackedPrometheusHook(registry)
    managers: list[weakref.ref[HookManager]] = []
    with start_metrics_server(port=0, registry=registry) as server:
        before = scrape_hook_errors(server.url)
        for _ in range(runs):
            manager = HookManager()
            manager.add(hook)
            manager.add(Raising(HookEvent.ON_ERROR))
            with pytest.raises(Boom):
                execute(raise_on_13, range(20), hooks=manager, executor_type="serial",
                        chunksize=2)
            managers.append(weakref.ref(manager))
            del manager
        gc.collect()
        assert [ref for ref in managers if ref() is not None] == []
        assert len(hook.observers) == runs
        assert [ref for ref in hook.observers if ref() is not None] == []
        # the failures of hooks are still counted, read from the process-wide count
        assert added(before, scrape_hook_errors(server.url)) == {"on_error": runs}
    assert value(registry, names.ERRORS_TOTAL, function=RAISE, error_type="Boom") == runs
    assert value(registry, names.EXECUTIONS_TOTAL, function=RAISE, status="error") == runs
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=RAISE) == 0


# ---------------------------------------------------------------- label cardinality


def test_distinct_function_labels_are_capped(registry: CollectorRegistry) -> None:
    hook = PrometheusHook(registry, max_functions=2)
    for func in (square, spin, nap, tag, square):
        execute(func, range(6), hooks=hook, executor_type="serial", chunksize=3)
    body = generate_latest(registry).decode()
    functions = {s.labels["function"] for family in parse_text(body)
                 for s in family.samples if "function" in s.labels}
    assert functions == {SQUARE, SPIN, names.OTHER_FUNCTION}
    other = names.OTHER_FUNCTION
    assert value(registry, names.ITEMS_PROCESSED_TOTAL, function=SQUARE) == 12  # known: kept
    assert value(registry, names.ITEMS_PROCESSED_TOTAL, function=other) == 12  # nap and tag
    assert value(registry, names.EXECUTIONS_TOTAL, function=other, status="success") == 2
    assert value(registry, names.EXECUTIONS_IN_PROGRESS, function=other) == 0
    assert value(registry, names.CHUNK_DURATION_SECONDS + "_count", function=other) == 4


def test_the_function_cap_defaults_to_a_thousand(registry: CollectorRegistry) -> None:
    hook = PrometheusHook(registry)
    assert names.DEFAULT_MAX_FUNCTIONS == 1000
    labels = [hook.metrics.function_label(f"generated:f{i}") for i in range(1001)]
    assert labels[:1000] == [f"generated:f{i}" for i in range(1000)]
    assert labels[1000] == names.OTHER_FUNCTION
    assert hook.metrics.function_label("generated:f7") == "generated:f7"


# ---------------------------------------------------------------- plan changes


def test_plan_changes_are_counted_and_move_the_plan_gauges(registry: CollectorRegistry) -> None:
    plans: list[tuple[int, int]] = []
    manager = HookManager()
    manager.register(HookEvent.ON_PLAN_CHANGE, lambda ctx: plans.append(
        (ctx.n_jobs, ctx.chunksize)))
    # threads fixed, no chunk size: the first tasks probe, then the measured task size
    # is published as a plan change
    execute(spin, range(200), hooks=[manager, PrometheusHook(registry)],
            executor_type="thread", n_jobs=2)
    assert plans, "the run revised no plan"
    assert value(registry, names.PLAN_REVISIONS_TOTAL, function=SPIN) == len(plans)
    assert value(registry, names.WORKERS, function=SPIN) == plans[-1][0]
    assert value(registry, names.CHUNKSIZE, function=SPIN) == plans[-1][1]


# ---------------------------------------------------------------- exemplars


def exemplar_lines(registry: CollectorRegistry, metric: str) -> list[str]:
    return [line for line in generate_openmetrics(registry).decode().splitlines()
            if line.startswith(metric + "_bucket") and " # {" in line]


def test_exemplars_carry_the_trace_of_the_current_span(registry: CollectorRegistry) -> None:
    with tracer().start_as_current_span("batch job") as span:
        execute(spin, range(60), hooks=PrometheusHook(registry),
                executor_type="thread", n_jobs=2, chunksize=10)
    wanted = f'trace_id="{trace_hex(span)}"'
    for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
        lines = exemplar_lines(registry, metric)
        assert lines, f"no exemplar on {metric}"
        assert all(wanted in line and 'span_id="' in line for line in lines), lines
    assert " # {" not in generate_latest(registry).decode()  # text format: no exemplars


def test_exemplars_work_whatever_the_hook_order(registry: CollectorRegistry) -> None:
    otel_like = SpanAsCurrentHook(tracer())
    # registered after PrometheusHook: no span is current yet at its PRE_EXECUTE
    execute(spin, range(60), hooks=[PrometheusHook(registry), otel_like],
            executor_type="thread", n_jobs=2, chunksize=10)
    assert otel_like.span is not None
    wanted = f'trace_id="{trace_hex(otel_like.span)}"'
    for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
        lines = exemplar_lines(registry, metric)
        assert lines and all(wanted in line for line in lines), (metric, lines)


@pytest.mark.parametrize("prometheus_first", [True, False])
def test_exemplars_link_to_the_opentelemetry_integrations_span(
        registry: CollectorRegistry, prometheus_first: bool) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from amorsize.integrations.opentelemetry import OpenTelemetryHook

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks: list[Hook] = [PrometheusHook(registry), OpenTelemetryHook(tracer_provider=provider)]
    if not prometheus_first:
        hooks.reverse()
    execute(spin, range(60), hooks=hooks, executor_type="thread", n_jobs=2, chunksize=10)
    (span,) = [s for s in exporter.get_finished_spans() if s.name == names.SPAN_EXECUTE]
    wanted = (f'trace_id="{trace.format_trace_id(span.context.trace_id)}"',
              f'span_id="{trace.format_span_id(span.context.span_id)}"')
    for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
        lines = exemplar_lines(registry, metric)
        assert lines and all(all(w in line for w in wanted) for line in lines), (metric, lines)


def test_no_exemplars_without_a_sampled_span(registry: CollectorRegistry) -> None:
    execute(spin, range(30), hooks=PrometheusHook(registry), n_jobs=1, chunksize=10)
    with tracer(sampled=False).start_as_current_span("not sampled"):
        execute(spin, range(30), hooks=PrometheusHook(registry), n_jobs=1, chunksize=10)
    with tracer().start_as_current_span("sampled, but exemplars off"):
        execute(spin, range(30), hooks=PrometheusHook(registry, exemplars=False),
                n_jobs=1, chunksize=10)
    assert value(registry, names.EXECUTIONS_TOTAL, function=SPIN, status="success") == 3
    assert " # {" not in generate_openmetrics(registry).decode()


# ---------------------------------------------------------------- Pushgateway down


def test_pushgateway_down_logs_a_warning_and_the_job_succeeds(
        registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    hook = PrometheusHook(registry, pushgateway=address, push_timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="amorsize.integrations.prometheus"):
        assert execute(square, range(20), hooks=hook, n_jobs=1, chunksize=5) == [
            x * x for x in range(20)]
    warnings = [r for r in caplog.records if r.name == "amorsize.integrations.prometheus"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert address in warnings[0].getMessage()
    assert value(registry, names.EXECUTIONS_TOTAL, function=SQUARE, status="success") == 1
    assert hook.push(SQUARE) is False


class SlowGateway:
    """A Pushgateway stand-in on a free loopback port: it reads a push, then answers it
    one byte every 50 ms (never silent long enough for a socket timeout) until the test
    releases it, or for at most 120 s."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.received = threading.Event()
        self.answered = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-gateway", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._socket.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += connection.recv(65536)
            self.received.set()
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                deadline = time.monotonic() + 120.0  # failure bound only
                while not self.release.wait(0.05) and time.monotonic() < deadline:
                    connection.sendall(b"z")
                connection.sendall(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass  # the client gave up
        self.answered.set()

    def close(self) -> None:
        """Let the answer finish, and wait for the push thread to end."""
        self.release.set()
        self._thread.join(timeout=60)
        self._socket.close()
        deadline = time.monotonic() + 60.0
        while any(t.name == "amorsize-push" for t in threading.enumerate()) and \
                time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def slow_gateway() -> Iterator[SlowGateway]:
    gateway = SlowGateway()
    try:
        yield gateway
    finally:
        gateway.close()


def test_push_timeout_is_a_deadline_for_the_whole_push(
        registry: CollectorRegistry, slow_gateway: SlowGateway,
        caplog: pytest.LogCaptureFixture) -> None:
    hook = PrometheusHook(registry, pushgateway=slow_gateway.address, push_timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="amorsize.integrations.prometheus"):
        assert execute(square, range(20), hooks=hook, executor_type="serial",
                       chunksize=5) == [x * x for x in range(20)]
        # execute() returned while the gateway was still answering the push
        assert slow_gateway.received.is_set()
        assert not slow_gateway.answered.is_set()
        warnings = [r for r in caplog.records if r.name == "amorsize.integrations.prometheus"]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert slow_gateway.address in warnings[0].getMessage()
        # a push while the last one is still going is skipped, not queued behind it
        assert hook.push(SQUARE) is False
        assert not slow_gateway.answered.is_set()
    warnings = [r for r in caplog.records if r.name == "amorsize.integrations.prometheus"]
    assert len(warnings) == 2 and "still running" in warnings[1].getMessage()
    assert value(registry, names.EXECUTIONS_TOTAL, function=SQUARE, status="success") == 1


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(("kwargs", "error", "parameter"), [
    ({"registry": "default"}, TypeError, "registry"),
    ({"pushgateway": 9091}, TypeError, "pushgateway"),
    ({"pushgateway": " "}, ValueError, "pushgateway"),
    ({"job": ""}, ValueError, "job"),
    ({"grouping_key": ["instance"]}, TypeError, "grouping_key"),
    ({"grouping_key": {"bad-label": "x"}}, ValueError, "grouping_key"),
    ({"grouping_key": {"job": "x"}}, ValueError, "grouping_key"),
    ({"grouping_key": {"function": "x"}}, ValueError, "grouping_key"),
    ({"grouping_key": {"instance": 3}}, TypeError, "grouping_key"),
    ({"push_timeout": 0}, ValueError, "push_timeout"),
    ({"push_timeout": math.nan}, ValueError, "push_timeout"),
    ({"max_functions": 0}, ValueError, "max_functions"),
    ({"max_functions": 2.5}, ValueError, "max_functions"),
])
def test_bad_arguments_name_the_parameter(
        kwargs: dict[str, Any], error: type[Exception], parameter: str) -> None:
    with pytest.raises(error, match=parameter):
        PrometheusHook(**kwargs)


def test_push_without_a_gateway_is_an_error(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="pushgateway"):
        PrometheusHook(registry).push()


def test_import_works_without_prometheus_client_and_use_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "prometheus_client" or name.startswith("prometheus_client."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delitem(sys.modules, "amorsize.integrations.prometheus")
    module = importlib.import_module("amorsize.integrations.prometheus")
    with pytest.raises(ImportError, match=r'pip install "amorsize\[prometheus\]"'):
        module.PrometheusHook()
    with pytest.raises(ImportError, match=r'pip install "amorsize\[prometheus\]"'):
        module.start_metrics_server(port=0)


def test_importing_the_module_registers_nothing() -> None:
    code = ("import prometheus_client, amorsize.integrations.prometheus as p; "
            "print(prometheus_client.generate_latest().decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "python_info" in out  # the default collectors are there...
    assert names.METRIC_PREFIX not in out  # ...and nothing of amorsize


# ---------------------------------------------------------------- /metrics server


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[Any]:
    handle = start_metrics_server(port=0, registry=registry)
    try:
        yield handle
    finally:
        handle.stop()


def fetch(url: str, accept: Optional[str] = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_metrics_server_on_a_free_port_serves_both_formats(
        registry: CollectorRegistry, server: Any) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/metrics"
    with tracer().start_as_current_span("scraped job"):
        execute(square, range(25), hooks=PrometheusHook(registry), n_jobs=1, chunksize=5)
    content_type, body = fetch(server.url)
    assert content_type.startswith("text/plain")
    assert f'{names.ITEMS_PROCESSED_TOTAL}{{function="{SQUARE}"}} 25.0' in body
    content_type, body = fetch(server.url, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n") and 'trace_id="' in body


def test_metrics_server_stop_closes_the_port(registry: CollectorRegistry) -> None:
    with start_metrics_server(port=0, registry=registry) as handle:
        assert fetch(handle.url)[0].startswith("text/plain")
    handle.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        fetch(handle.url)


def test_metrics_server_port_taken_is_a_clear_error(registry: CollectorRegistry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} is already in use"):
            start_metrics_server(port=port, registry=registry)


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"port": -1}, "port"),
    ({"port": 70000}, "port"),
    ({"port": "9464"}, "port"),
    ({"port": True}, "port"),
    ({"port": 0, "addr": ""}, "addr"),
    ({"port": 0, "certfile": "cert.pem"}, "keyfile"),
    ({"port": 0, "client_auth_required": True}, "certfile"),
])
def test_metrics_server_bad_arguments(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        start_metrics_server(**kwargs)


def test_metrics_server_over_tls(registry: CollectorRegistry, tmp_path: Path) -> None:
    import ssl

    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    PrometheusHook(registry)
    with start_metrics_server(port=0, registry=registry, certfile=str(cert),
                              keyfile=str(key)) as handle:
        assert handle.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(handle.url, context=context, timeout=5) as response:
            assert names.BUILD_INFO in response.read().decode()
        with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP
            urllib.request.urlopen(handle.url.replace("https", "http"), timeout=5).read()
