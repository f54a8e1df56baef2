"""The Grafana dashboard's queries, proved against a real Prometheus scraping a real demo.

Starts `python -m amorsize demo` with /metrics on a free loopback port, a real
Prometheus (Debian package) scraping it every second, waits until the demo has run
every kind of job (a failure included), then runs every target of every panel, with
the template variables substituted, through Prometheus's HTTP API and requires a
non-empty, finite answer.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard import dashboard_queries, variable_queries
from tests.servers import PrometheusServer, free_port, start_prometheus

DEMO_SECONDS = 240  # upper bound; the test stops the demo as soon as it has its answers


@pytest.fixture(scope="module")
def demo_and_prometheus() -> Iterator[tuple[subprocess.Popen[str], PrometheusServer]]:
    """A running demo and a Prometheus scraping it."""
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "amorsize", "demo", "--metrics-port", str(port),
         "--duration", str(DEMO_SECONDS), "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with start_prometheus([f"127.0.0.1:{port}"], scrape_interval="1s") as prometheus:
            yield demo, prometheus
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def _finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if math.isfinite(v)]


def test_every_dashboard_query_answers_with_finite_data(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    demo, prometheus = demo_and_prometheus
    # Enough history for rate() windows: every job kind ran a few times, the flaky one
    # both failed and succeeded, and each series has several samples.
    prometheus.wait_for('amorsize_executions_total{status="error"} > 0', timeout=120)
    prometheus.wait_for(
        "count(sum by (function) (amorsize_executions_total) >= 3) >= 5", timeout=120)
    prometheus.wait_for(
        'amorsize_executions_total{function="amorsize.demo:flaky_item",status="success"} >= 2',
        timeout=120)
    prometheus.wait_for("min(count_over_time(amorsize_executions_total[1m])) >= 5", timeout=90)
    functions = [s["metric"]["function"] for s in prometheus.query(
        "amorsize_executions_total")]
    assert any(f.endswith(":heavy_item") for f in functions), functions

    for name, query in variable_queries_expanded():
        assert prometheus.query(query), f"template variable {name} query {query!r} is empty"

    failures = []
    for selection in (".*", "amorsize.demo:flaky_item"):
        for title, expr in dashboard_queries({"function": selection}):
            result = prometheus.query(expr)
            if not _finite_values(result):
                failures.append((selection, title, expr, result[:3]))
    assert not failures, "panels without finite data:\n" + "\n".join(map(str, failures))
    assert demo.poll() is None, "the demo stopped early:\n" + (demo.stdout.read()
                                                               if demo.stdout else "")


def variable_queries_expanded() -> list[tuple[str, str]]:
    """The dashboard's template-variable queries as PromQL (label_values -> the metric)."""
    expanded = []
    for name, query in variable_queries_of_dashboard():
        if query.startswith("label_values("):
            inner = query[len("label_values("):-1]
            metric = inner.rsplit(",", 1)[0].strip()
            expanded.append((name, metric))
        else:
            expanded.append((name, query))
    return expanded


def variable_queries_of_dashboard() -> list[tuple[str, str]]:
    """Indirection so the helper's signature stays the dashboard module's business."""
    from tests.dashboard import load_dashboard

    return variable_queries(load_dashboard())


def test_demo_stops_cleanly_on_ctrl_c(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    demo, prometheus = demo_and_prometheus
    prometheus.wait_for("amorsize_build_info == 1", timeout=60)
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output
    assert "demo finished" in output, output
    assert "heavy" in output and "process" in output, output
