"""Integration tests of the Prometheus integration with real servers.

A real Prometheus (Debian package `prometheus`) scrapes the hook's /metrics every
second during a parallel run; a real Pushgateway (`prometheus-pushgateway`) receives
batch pushes; 20 threads scrape /metrics at once during a run. The servers are
started on free loopback ports by tests/servers.py and always stopped.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

import amorsize
from amorsize import execute, names
from amorsize.hooks import hook_error_counts
from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server
from tests.servers import PrometheusServer, start_prometheus, start_pushgateway
from tests.workloads import spin, square

N_ITEMS = 200
GATE_AT = 100  # items from here on wait for the gate file
CHUNKSIZE = 5
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def gated(x: int, gate: str) -> int:
    """Double x; items >= GATE_AT first wait (at most 60 s) until `gate` exists."""
    if x >= GATE_AT:
        deadline = time.monotonic() + 60.0
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.005)
    time.sleep(0.002)
    return 2 * x


GATED = names.function_label(gated)
SQUARE = names.function_label(square)
SPIN = names.function_label(spin)


def wait_for_exemplar(prom: PrometheusServer, expr: str, trace_id: str, start: float,
                      timeout: float = 20.0) -> list[dict[str, Any]]:
    """Poll /api/v1/query_exemplars until an exemplar with `trace_id` shows up."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = prom.query_exemplars(expr, start, time.time() + 60)
        exemplars = [e for series in found for e in series["exemplars"]]
        if any(e["labels"].get("trace_id") == trace_id for e in exemplars):
            return exemplars
        time.sleep(0.25)
    raise AssertionError(f"no exemplar with trace_id {trace_id} for {expr}; got {found}")


def test_prometheus_scrapes_a_live_parallel_run(
        tmp_path: Path, no_leftover_children: None) -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    tracer = TracerProvider().get_tracer("tests.prometheus_server")
    gate = tmp_path / "gate"
    outcome: dict[str, Any] = {}

    def run() -> None:
        with tracer.start_as_current_span("nightly batch") as span:
            outcome["trace_id"] = trace.format_trace_id(span.get_span_context().trace_id)
            try:
                outcome["results"] = execute(
                    functools.partial(gated, gate=str(gate)), range(N_ITEMS), hooks=hook,
                    executor_type="process", n_jobs=2, chunksize=CHUNKSIZE)
            except BaseException as error:  # reported by the test below
                outcome["error"] = error

    sel = f'{{job="amorsize",function="{GATED}"}}'
    with start_metrics_server(port=0, registry=registry) as metrics, \
            start_prometheus(targets=[f"127.0.0.1:{metrics.port}"], scrape_interval="1s") as prom:
        prom.wait_for('up{job="amorsize"} == 1')
        started = time.time()
        worker = threading.Thread(target=run)
        worker.start()
        try:
            # Live: Prometheus sees the run in progress, half of the items done.
            prom.wait_for(f"{names.EXECUTIONS_IN_PROGRESS}{sel} == 1 and on (function) "
                          f"{names.ITEMS_PROCESSED_TOTAL}{sel} == {GATE_AT}")
            assert prom.query_value(f"{names.CHUNKS_PROCESSED_TOTAL}{sel}") == GATE_AT / CHUNKSIZE
            live_throughput = prom.query_value(f"{names.THROUGHPUT_ITEMS_PER_SECOND}{sel}")
            assert live_throughput is not None and live_throughput > 0
            assert prom.query_value(f"{names.WORKERS}{sel}") == 2
            assert prom.query_value(f"{names.CHUNKSIZE}{sel}") == CHUNKSIZE
        finally:
            gate.touch()
            worker.join(timeout=120)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["results"] == [2 * x for x in range(N_ITEMS)]

        prom.wait_for(f"{names.EXECUTIONS_IN_PROGRESS}{sel} == 0 and on (function) "
                      f'{names.EXECUTIONS_TOTAL}{{function="{GATED}",status="success"}} == 1')
        assert prom.query_value(f"{names.ITEMS_PROCESSED_TOTAL}{sel}") == N_ITEMS
        assert prom.query_value(f"{names.CHUNKS_PROCESSED_TOTAL}{sel}") == N_ITEMS / CHUNKSIZE
        assert prom.query_value(f"{names.CHUNK_DURATION_SECONDS}_count{sel}") == (
            N_ITEMS / CHUNKSIZE)
        assert prom.query_value(f"{names.EXECUTION_DURATION_SECONDS}_count{sel}") == 1
        assert prom.query_value(f'{names.EXECUTIONS_TOTAL}{{function="{GATED}",'
                                f'status="error"}}') == 0
        assert prom.query(f'{names.ERRORS_TOTAL}{{function="{GATED}"}}') == []
        assert prom.query_value(f'{names.BUILD_INFO}{{version="{amorsize.__version__}"}}') == 1
        # hook errors: the process-wide count (none raised in this run), read at scrape
        assert prom.query_value(f'sum({names.HOOK_ERRORS_TOTAL}{{job="amorsize"}})') == sum(
            hook_error_counts().values())
        efficiency = prom.query_value(f"{names.PARALLEL_EFFICIENCY_RATIO}{sel}")
        assert efficiency is not None and efficiency > 0

        # Exemplars stored by Prometheus link both duration histograms to the run's trace.
        for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
            exemplars = wait_for_exemplar(prom, f"{metric}_bucket{sel}", outcome["trace_id"],
                                          started - 5)
            assert all(len(e["labels"].get("span_id", "")) == 16 for e in exemplars)


def test_scrape_storm_during_a_run(no_leftover_children: None) -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    finished = threading.Event()
    failures: list[BaseException] = []
    seen: list[list[float]] = [[] for _ in range(20)]

    def scrape(index: int, url: str) -> None:
        accept, parse = ((OPENMETRICS, parse_openmetrics) if index % 2
                         else ("text/plain", parse_text))
        deadline = time.monotonic() + 2.0
        try:
            while not (finished.is_set() and time.monotonic() > deadline) or len(seen[index]) < 5:
                request = urllib.request.Request(url, headers={"Accept": accept})
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200
                    body = response.read().decode()
                items = [s.value for f in parse(body) for s in f.samples
                         if s.name == names.ITEMS_PROCESSED_TOTAL]
                seen[index].append(items[0] if items else 0.0)
        except BaseException as error:  # reported by the test below
            failures.append(error)

    with start_metrics_server(port=0, registry=registry) as metrics:
        scrapers = [threading.Thread(target=scrape, args=(i, metrics.url)) for i in range(20)]
        for scraper in scrapers:
            scraper.start()
        try:
            results = execute(spin, range(600), hooks=hook, executor_type="process",
                              n_jobs=2, chunksize=25)
        finally:
            finished.set()
            for scraper in scrapers:
                scraper.join(timeout=60)
    assert not failures, failures[:3]
    assert results == [spin(x) for x in range(600)]
    assert registry.get_sample_value(names.ITEMS_PROCESSED_TOTAL, {"function": SPIN}) == 600
    for values in seen:
        assert len(values) >= 5
        assert values == sorted(values)  # a counter never goes back, even under load
    assert max(values[-1] for values in seen) == 600


def group_samples(text: str, metric: str) -> dict[tuple[str, str], float]:
    """{(job, function): value} of one metric in a Pushgateway exposition."""
    return {(s.labels.get("job", ""), s.labels.get("function", "")): s.value
            for family in parse_text(text) for s in family.samples if s.name == metric}


def test_batch_runs_push_to_a_real_pushgateway() -> None:
    registry = CollectorRegistry()
    with start_pushgateway() as gateway, start_prometheus(
            targets=[gateway.address], job="pushgateway", honor_labels=True) as prom:
        hook = PrometheusHook(registry, pushgateway=gateway.address, job="amorsize-batch")
        execute(square, range(30), hooks=hook, n_jobs=1, chunksize=5)
        execute(spin, range(20), hooks=hook, n_jobs=1, chunksize=5)

        text = gateway.metrics_text()
        items = group_samples(text, names.ITEMS_PROCESSED_TOTAL)
        assert items == {("amorsize-batch", SQUARE): 30, ("amorsize-batch", SPIN): 20}
        executions = group_samples(text, names.EXECUTIONS_TOTAL)
        assert executions[("amorsize-batch", SQUARE)] == 1
        assert executions[("amorsize-batch", SPIN)] == 1
        assert "_created" not in text
        groups = sorted(g["labels"]["function"] for g in gateway.groups())
        assert groups == sorted([SQUARE, SPIN])  # one group per function
        assert set(group_samples(text, "push_failure_time_seconds").values()) == {0}

        # Another run of the same function replaces its group with the new totals.
        execute(square, range(30), hooks=hook, n_jobs=1, chunksize=5)
        items = group_samples(gateway.metrics_text(), names.ITEMS_PROCESSED_TOTAL)
        assert items[("amorsize-batch", SQUARE)] == 60 and items[("amorsize-batch", SPIN)] == 20

        # Prometheus scrapes the gateway (honor_labels) and sees the batch job's values.
        prom.wait_for(f'{names.ITEMS_PROCESSED_TOTAL}{{job="amorsize-batch",'
                      f'function="{SQUARE}"}} == 60')
        assert prom.query_value(f'{names.ITEMS_PROCESSED_TOTAL}{{job="amorsize-batch",'
                                f'function="{SPIN}"}}') == 20


def test_an_explicit_grouping_key_pushes_every_function_to_one_group() -> None:
    registry = CollectorRegistry()
    with start_pushgateway() as gateway:
        hook = PrometheusHook(registry, pushgateway=gateway.address, job="nightly",
                              grouping_key={"instance": "batch-1"})
        execute(square, range(10), hooks=hook, n_jobs=1, chunksize=5)
        execute(spin, range(10), hooks=hook, n_jobs=1, chunksize=5)
        groups = gateway.groups()
        assert [g["labels"] for g in groups] == [{"job": "nightly", "instance": "batch-1"}]
        items = group_samples(gateway.metrics_text(), names.ITEMS_PROCESSED_TOTAL)
        assert items == {("nightly", SQUARE): 10, ("nightly", SPIN): 10}

