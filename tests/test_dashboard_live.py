"""The Grafana dashboard's queries, proved against a real Prometheus scraping a real demo.

Starts `python -m amorsize demo` with /metrics on a free loopback port and a real
Prometheus (Debian package) that scrapes it every second, with the shipped recording
rules (evaluated every second) and the shipped `metric_relabel_configs`. Prometheus
scrapes the one demo twice, as two instances of two jobs, so that the dashboard meets
several instances as it would in production. The test waits until the demo has run
every kind of job (a failure included), then runs every target of every panel, the
template variables substituted, through Prometheus's HTTP API and requires a
non-empty, finite answer; no panel may show the same legend twice.

AWAITING_LIBRARY would name metrics of names.py the library does not export yet (their
queries must then be valid PromQL, not return data); it is empty: every metric is.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from amorsize import names
from tests.dashboard import (
    annotation_queries,
    dashboard_queries,
    iter_targets,
    load_dashboard,
    source_metrics,
    substitute,
    variable_queries,
)
from tests.servers import PrometheusServer, free_port, prometheus_config, start_prometheus

ROOT = Path(__file__).resolve().parent.parent
DEMO_SECONDS = 240  # upper bound; the test stops the demo as soon as it has its answers
JOB, REPLICA_JOB = "amorsize", "amorsize-replica"
ALL = {"function": ".*", "job": ".*", "instance": ".*"}
# Counters the library will export (the names are in names.py already); see the
# module docstring.
AWAITING_LIBRARY: frozenset[str] = frozenset()  # every names.py metric is exported
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _config(port: int) -> dict[str, Any]:
    """Scrape the demo as two jobs/instances, with the stack's relabelling and rules."""
    shipped = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    relabel = next(job for job in shipped["scrape_configs"]
                   if job["job_name"] == "amorsize-demo")["metric_relabel_configs"]
    config = prometheus_config([f"127.0.0.1:{port}"], scrape_interval="1s", job=JOB,
                               rule_files=[ROOT / "prometheus" / "recording_rules.yml"],
                               evaluation_interval="1s")
    first = config["scrape_configs"][0]
    first["metric_relabel_configs"] = relabel
    replica = {**first, "job_name": REPLICA_JOB,
               "relabel_configs": [{"target_label": "instance", "replacement": "replica:1"}]}
    config["scrape_configs"].append(replica)
    return config


@pytest.fixture(scope="module")
def demo_and_prometheus() -> Iterator[tuple[subprocess.Popen[str], PrometheusServer]]:
    """A running demo and a Prometheus scraping it."""
    port = free_port()
    # A runner started in the background (`cmd &`) ignores SIGINT, and so would the
    # demo it starts; a terminal user's Ctrl-C reaches a demo with Python's handler.
    with_ctrl_c = ("import runpy, signal; signal.signal(signal.SIGINT, "
                   "signal.default_int_handler); runpy.run_module('amorsize', "
                   "run_name='__main__', alter_sys=True)")
    demo = subprocess.Popen(
        [sys.executable, "-c", with_ctrl_c, "demo", "--metrics-port", str(port),
         "--duration", str(DEMO_SECONDS), "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    try:
        with start_prometheus(config=_config(port)) as prometheus:
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


def _legend(template: str, labels: dict[str, str]) -> str:
    return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), template)


def _wait_for_history(prometheus: PrometheusServer) -> None:
    """Enough history for rate() windows: every job kind ran a few times, the flaky one
    both failed and succeeded, and each series has several samples."""
    prometheus.wait_for('amorsize_executions_total{status="error"} > 0', timeout=120)
    prometheus.wait_for(
        f'count(sum by (function) (amorsize_executions_total{{job="{JOB}"}}) >= 3) >= 5',
        timeout=120)
    prometheus.wait_for(
        f'amorsize_executions_total{{job="{JOB}", function="amorsize.demo:flaky_item",'
        f' status="success"}} >= 2', timeout=120)
    prometheus.wait_for("min(count_over_time(amorsize_executions_total[1m])) >= 5", timeout=90)


def test_every_dashboard_query_answers_with_finite_data(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    demo, prometheus = demo_and_prometheus
    _wait_for_history(prometheus)
    functions = [s["metric"]["function"] for s in prometheus.query(
        "amorsize_executions_total")]
    assert any(f.endswith(":heavy_item") for f in functions), functions

    exported = {s["metric"]["__name__"] for s in prometheus.query(
        'count by (__name__) ({__name__=~"amorsize_.+"})')}
    exported_metrics = {name.removesuffix("_bucket").removesuffix("_sum")
                        .removesuffix("_count") for name in exported}
    exported_metrics |= {name + "_total" for name in exported_metrics}
    now_exported = AWAITING_LIBRARY & exported_metrics
    assert not now_exported, (f"the library exports {sorted(now_exported)} now: remove them "
                              "from AWAITING_LIBRARY so their panels must show data")
    missing = {spec.name for spec in names.PROMETHEUS_METRICS} - AWAITING_LIBRARY - (
        exported_metrics)
    assert not missing, f"names.py metrics the demo does not export: {sorted(missing)}"
    assert not prometheus.query('{__name__=~".+_created"}'), "_created series were stored"

    for name, query in variable_queries_expanded():
        assert prometheus.query(query), f"template variable {name} query {query!r} is empty"

    failures, awaiting = [], []
    selections = ({**ALL}, {**ALL, "function": "amorsize.demo:flaky_item"},
                  {**ALL, "job": JOB, "instance": "127.0.0.1:.*"})
    for values in selections:
        for title, expr in dashboard_queries(values):
            result = prometheus.query(expr)  # raises on invalid PromQL
            if source_metrics(expr) & AWAITING_LIBRARY:
                awaiting.append((title, expr))
            elif not _finite_values(result):
                failures.append((values, title, expr, result[:3]))
    assert not failures, "panels without finite data:\n" + "\n".join(map(str, failures))
    assert not awaiting, awaiting
    assert demo.poll() is None, "the demo stopped early:\n" + (demo.stdout.read()
                                                               if demo.stdout else "")


def test_no_panel_repeats_a_legend_with_several_instances(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    _, prometheus = demo_and_prometheus
    _wait_for_history(prometheus)
    assert {s["metric"]["instance"] for s in prometheus.query("amorsize_build_info")} == {
        f"127.0.0.1:{s['metric']['instance'].rpartition(':')[2]}"
        for s in prometheus.query(f'amorsize_build_info{{job="{JOB}"}}')} | {"replica:1"}
    legends: dict[str, list[str]] = {}
    for panel, target in iter_targets(load_dashboard()):
        if panel["type"] == "table" or not target.get("legendFormat"):
            continue
        expr = substitute(target["expr"], {**ALL, "__rate_interval": "1m"})
        for series in prometheus.query(expr):
            legends.setdefault(panel["title"], []).append(
                _legend(target["legendFormat"], series["metric"]))
    duplicated = {title: sorted({x for x in shown if shown.count(x) > 1})
                  for title, shown in legends.items() if len(shown) != len(set(shown))}
    assert not duplicated, duplicated
    assert "Workers and chunksize" in legends and "Speedup: estimated vs actual" in legends


def test_annotation_queries_run(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    _, prometheus = demo_and_prometheus
    prometheus.wait_for("amorsize_build_info == 1", timeout=60)
    queries = dict(annotation_queries(ALL))
    assert set(queries) == {"Process starts", "Plan changes", "amorsize alerts"}
    starts = prometheus.wait_for(queries["Process starts"], timeout=60)
    # one start per job and instance, at the demo's own start time (in milliseconds)
    assert len(starts) == 2 and len({s["value"][1] for s in starts}) == 1, starts
    # The counter behind "Plan changes" is exported from each run's start; the
    # annotation itself shows only where a run revised its plan.
    assert prometheus.wait_for("amorsize_plan_revisions_total", timeout=60)
    prometheus.query(queries["Plan changes"])
    # No alert rules here: tests/test_alerting_live.py runs that one against real alerts.
    prometheus.query(queries["amorsize alerts"])


def variable_queries_expanded() -> list[tuple[str, str]]:
    """The dashboard's template-variable queries as PromQL (label_values -> the metric),
    the other variables set to All."""
    expanded = []
    for name, query in variable_queries(load_dashboard()):
        query = substitute(query, ALL)
        if query.startswith("label_values("):
            inner = query[len("label_values("):-1]
            metric = inner.rsplit(",", 1)[0].strip()
            expanded.append((name, metric))
        else:
            expanded.append((name, query))
    return expanded


def test_demo_stops_cleanly_on_ctrl_c(
    demo_and_prometheus: tuple[subprocess.Popen[str], PrometheusServer],
) -> None:
    demo, prometheus = demo_and_prometheus
    # Stop it once the heavy job has run, so its line is there to check.
    prometheus.wait_for('amorsize_executions_total{function="amorsize.demo:heavy_item"} > 0',
                        timeout=120)
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output
    assert "demo finished" in output, output
    assert "heavy" in output, output
    if len(os.sched_getaffinity(0)) >= 2:  # on one core every job rightly runs in-process
        assert "process" in output, output
