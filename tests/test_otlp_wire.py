"""The real OTLP/HTTP exporters, to a receiver on a loopback port, and to no collector."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from amorsize import execute, names
from amorsize.integrations.opentelemetry import OpenTelemetryHook, configure_tracing
from amorsize.names import (
    OTEL_METRICS,
    SPAN_CHUNK,
    SPAN_EXECUTE,
    SPAN_OPTIMIZE,
    TRACER_NAME,
)
from tests.otlp_receiver import OTLPReceiver, attributes
from tests.workloads import Boom, raise_on_13, spin, square

spin_2ms = functools.partial(spin, loops=30_000)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def key(span: ReadableSpan) -> tuple[bytes, bytes, bytes, str, int, int]:
    """What identifies a span on the wire: ids, parent, name, times."""
    parent = span.parent.span_id.to_bytes(8, "big") if span.parent is not None else b""
    assert span.start_time is not None and span.end_time is not None
    return (span.context.trace_id.to_bytes(16, "big"), span.context.span_id.to_bytes(8, "big"),
            parent, span.name, span.start_time, span.end_time)


def test_spans_arrive_whole_over_otlp_http(receiver: OTLPReceiver,
                                           no_leftover_children: None) -> None:
    provider = configure_tracing("amorsize-wire-test", receiver.url, set_global=False)
    copy = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(copy))
    hook = OpenTelemetryHook(provider, NoOpMeterProvider())
    try:
        execute(spin_2ms, range(40), hooks=hook, executor_type="process", n_jobs=2,
                chunksize=4)
        with pytest.raises(Boom):
            execute(raise_on_13, range(30), hooks=hook, executor_type="thread", n_jobs=2,
                    chunksize=3)
        execute(square, range(3000), hooks=hook, executor_type="thread", n_jobs=2,
                chunksize=2)  # 1500 chunk spans: several export batches
        assert provider.force_flush()
    finally:
        provider.shutdown()

    sent = copy.get_finished_spans()
    assert sum(s.name == SPAN_EXECUTE for s in sent) == 3
    assert sum(s.name == SPAN_CHUNK for s in sent) >= 10 + 1 + 1500
    received = receiver.spans()
    assert receiver.bad_requests == 0
    assert len(receiver.trace_requests) >= 3
    assert set(receiver.content_types) == {"application/x-protobuf"}
    on_wire = {(s.trace_id, s.span_id, s.parent_span_id, s.name, s.start_time_unix_nano,
                s.end_time_unix_nano): s for _, _, s in received}
    assert len(received) == len(sent)  # nothing missing, nothing twice
    assert set(on_wire) == {key(s) for s in sent}

    for resource, scope, _ in received:
        assert resource["service.name"] == "amorsize-wire-test"
        assert scope == TRACER_NAME
    for span in sent:
        wire = on_wire[key(span)]
        assert attributes(wire.attributes) == {
            k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
        }
        assert [e.name for e in wire.events] == [e.name for e in span.events]
    failed = [s for _, _, s in received if s.status.code == Status.STATUS_CODE_ERROR]
    assert sorted(s.name for s in failed) == [SPAN_CHUNK, SPAN_EXECUTE]
    for span in failed:
        [event] = span.events
        stacktrace = attributes(event.attributes)["exception.stacktrace"]
        assert "in raise_on_13" in stacktrace
    assert {s.name for _, _, s in received} == {SPAN_EXECUTE, SPAN_OPTIMIZE, SPAN_CHUNK}


def test_metrics_arrive_over_otlp_http(receiver: OTLPReceiver) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=receiver.url + "/v1/metrics", timeout=5),
        export_interval_millis=3_600_000,
    )
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        hook = OpenTelemetryHook(NoOpTracerProvider(), meters)
        execute(square, range(30), hooks=hook, executor_type="serial", chunksize=5)
        with pytest.raises(Boom):
            execute(raise_on_13, range(30), hooks=hook, executor_type="serial", chunksize=5)
        assert meters.force_flush()
    finally:
        meters.shutdown()

    metrics = receiver.metrics()
    # every metric of names.py, but plan revisions (nothing revised a fixed plan) and
    # the estimated speedup (a serial run fixed by the caller has no estimate)
    specs = {str(spec.otel_name): spec for spec in OTEL_METRICS}
    unsent = {str(names.METRICS_BY_NAME[name].otel_name)
              for name in (names.PLAN_REVISIONS_TOTAL, names.SPEEDUP_ESTIMATED)}
    assert set(metrics) == set(specs) - unsent
    for name, spec in specs.items():
        if name in unsent:
            continue
        assert metrics[name].unit == spec.unit
        assert metrics[name].description == spec.documentation
    items = {attributes(p.attributes)["amorsize.function"]: p.as_int
             for p in metrics["amorsize.items.processed"].sum.data_points}
    assert items == {"tests.workloads:square": 30, "tests.workloads:raise_on_13": 10}
    [errors] = metrics["amorsize.errors"].sum.data_points
    assert attributes(errors.attributes)["error.type"] == "Boom"
    assert errors.as_int == 1
    durations = metrics["amorsize.execution.duration"].histogram.data_points
    assert [d.count for d in durations] == [1, 1]


SCRIPT = """
    import sys
    from amorsize import execute, names
    from amorsize.integrations.opentelemetry import OpenTelemetryHook, configure_tracing
    from tests.workloads import nap

    configure_tracing("amorsize-no-collector", sys.argv[1])  # defaults, global
    results = execute(nap, range(100), hooks=OpenTelemetryHook(), executor_type="thread",
                      n_jobs=2, chunksize=2)
    assert results == list(range(100))
    print("job done", flush=True)
"""


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_collector_neither_fails_nor_stalls_the_job() -> None:
    """A closed port (refused) and a silent one (accepts, never answers): the job
    finishes, the export failure is logged, and the process exits on its own."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accept(): connections hang until the client gives up
    endpoints = [f"http://127.0.0.1:{free_closed_port()}",
                 f"http://127.0.0.1:{silent.getsockname()[1]}"]
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "50"}  # export while the job runs
    try:
        runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT), endpoint],
                                 cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE) for endpoint in endpoints]
        outputs: list[tuple[int, str, str]] = []
        for run in runs:
            try:
                out, err = run.communicate(timeout=30)  # failure bound, not a speed check
            except subprocess.TimeoutExpired:
                run.kill()
                run.communicate()
                pytest.fail("the process did not exit: the exit flush is not bounded")
            outputs.append((run.returncode, out, err))
    finally:
        silent.close()

    for (code, out, err), endpoint in zip(outputs, endpoints, strict=True):
        assert code == 0, f"{endpoint}: {err}"
        assert out == "job done\n"
        assert "export" in err.lower(), f"{endpoint}: the failure was not logged: {err!r}"
