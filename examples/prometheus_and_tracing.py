"""Prometheus metrics and OpenTelemetry traces from the same run.

Serves the amorsize metrics on a /metrics endpoint (a free port here; 9464 is the
usual one), records spans in memory and prints both. In production, point
Prometheus at the endpoint and call `configure_tracing(endpoint="http://jaeger:4318")`
instead of the in-memory exporter.
Run: python examples/prometheus_and_tracing.py   (needs `pip install "amorsize[all]"`)
"""

from __future__ import annotations

import time
import urllib.request

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from amorsize import execute
from amorsize.integrations.opentelemetry import OpenTelemetryHook
from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server


def render(n: int) -> int:
    """A few milliseconds of CPU work per item."""
    total = 0
    for i in range(10_000):
        total += (i * n) % 11
    return total


def flaky(n: int) -> int:
    """Fails on item 42, to show the error metrics and the span status."""
    time.sleep(0.001)
    if n == 42:
        raise RuntimeError("upstream returned 503")
    return n


def main() -> None:
    """Run two jobs with both integrations; print the metrics and the spans."""
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = [PrometheusHook(registry), OpenTelemetryHook(tracer_provider=provider)]

    execute(render, range(400), hooks)
    try:
        execute(flaky, range(100), hooks)
    except RuntimeError as error:
        print(f"flaky failed as expected: {error}")

    with (
        start_metrics_server(port=0, registry=registry) as server,
        urllib.request.urlopen(server.url, timeout=10) as response,
    ):
        text = response.read().decode()
    print(f"--- scraped {server.url}")
    wanted = ("amorsize_executions_total", "amorsize_items_processed_total",
              "amorsize_errors_total", "amorsize_workers", "amorsize_speedup_actual")
    for line in text.splitlines():
        if line.startswith(wanted):
            print(line)

    print("--- spans")
    spans = exporter.get_finished_spans()
    for span in spans:
        if span.name == "amorsize.execute":
            children = [s for s in spans if s.parent is not None
                        and s.parent.span_id == span.context.span_id]
            attributes = span.attributes or {}
            print(f"{span.name} {attributes.get('amorsize.function')} "
                  f"status={span.status.status_code.name} children: "
                  f"{sum(s.name == 'amorsize.chunk' for s in children)} chunks, "
                  f"{sum(s.name == 'amorsize.optimize' for s in children)} optimize")
    provider.shutdown()


if __name__ == "__main__":
    main()
