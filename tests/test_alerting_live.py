"""Alert delivery end to end: a failing demo -> Prometheus rules -> Alertmanager -> webhook.

Everything is real and local: `amorsize demo --jobs flaky --failure-rate 1` (every run
fails) serves /metrics; Debian's Prometheus scrapes it every second and evaluates the
shipped recording rules and alert rules every second; it sends firing alerts to
Debian's Alertmanager, which delivers them to a webhook receiver run by this test. All
listen on 127.0.0.1, on free ports, and are stopped at the end. A missing binary fails
the test (it is never skipped).

To finish in well under a minute, the test renders a copy of prometheus/alerts.yml in
which every `for:` is 60 times shorter (5m -> 5s) and evaluates every second instead of
every 15 s. The expressions, thresholds, volume gates, windows, labels and annotations
are the shipped ones, and recording_rules.yml is used as it is. The scrape job is not
called amorsize-demo, so nothing in the rules may depend on that name.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.dashboard import annotation_queries
from tests.demo_process import DEADLINE, DemoProcess
from tests.servers import (
    WebhookReceiver,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus"
FLAKY = "amorsize.demo:flaky_item"
JOB = "nightly-etl"  # any name: the rules must not hard-code the demo's job
_DURATION = re.compile(r"(\d+)([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _shortened(duration: str, factor: int = 60) -> str:
    """A Prometheus duration `factor` times shorter, in whole seconds (at least 1s)."""
    parts = _DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    seconds = sum(int(n) * _SECONDS[u] for n, u in parts)
    return f"{max(1, seconds // factor)}s"


def render_test_rules(directory: Path) -> list[Path]:
    """Copy the recording rules and a `for:`-shortened copy of the alerts; return both."""
    recording = directory / "recording_rules.yml"
    shutil.copyfile(RULES_DIR / "recording_rules.yml", recording)
    alerts = yaml.safe_load((RULES_DIR / "alerts.yml").read_text(encoding="utf-8"))
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = _shortened(rule["for"])
    rendered = directory / "alerts.yml"
    rendered.write_text(yaml.safe_dump(alerts, sort_keys=False), encoding="utf-8")
    return [recording, rendered]


def _alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """Deliver every alert at once to the webhook (no waiting to group, no resends)."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "job", "function"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{
            "name": "webhook",
            "webhook_configs": [{"url": webhook_url, "send_resolved": False}],
        }],
    }


def _is_error_rate_alert(payload: dict[str, Any]) -> bool:
    return any(alert.get("status") == "firing"
               and alert["labels"].get("alertname") == "AmorsizeHighErrorRate"
               and alert["labels"].get("function") == FLAKY
               for alert in payload.get("alerts", []))


def test_shortened_durations() -> None:
    assert [_shortened(d) for d in ("5m", "10m", "1m", "30s", "1h30m")] == [
        "5s", "10s", "1s", "1s", "90s"]


def test_a_failing_demo_pages_through_alertmanager(tmp_path: Path) -> None:
    rule_files = render_test_rules(tmp_path)
    with (
        WebhookReceiver() as webhook,
        start_alertmanager(_alertmanager_config(webhook.url)) as alertmanager,
        DemoProcess("--jobs", "flaky", "--failure-rate", "1", "--seed", "11") as demo,
    ):
        config = prometheus_config([f"127.0.0.1:{demo.metrics_port()}"], scrape_interval="1s",
                                   job=JOB, rule_files=rule_files, evaluation_interval="1s")
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager.address]}]}]}
        with start_prometheus(config=config) as prometheus:

            def state() -> str:
                return (f"ALERTS: {prometheus.query('ALERTS')}\n"
                        f"volume: {prometheus.query('job_instance_function:amorsize_executions:increase10m')}\n"  # noqa: E501
                        f"alertmanager: {alertmanager.alerts()}\n"
                        f"prometheus log:\n{prometheus.log_tail()}\n"
                        f"demo:\n{demo.output()[-2000:]}")

            payload = webhook.wait_for(_is_error_rate_alert, timeout=DEADLINE, describe=state)
            firing = prometheus.query('ALERTS{alertstate="firing"}')
            # The dashboard's alert annotation, filtered to this job, shows it.
            annotation = dict(annotation_queries(
                {"job": JOB, "instance": ".*", "function": ".*"}))["amorsize alerts"]
            annotated = prometheus.query(annotation)

    alert = next(a for a in payload["alerts"]
                 if a["labels"]["alertname"] == "AmorsizeHighErrorRate")
    assert payload["receiver"] == "webhook"
    assert alert["labels"] == {"alertname": "AmorsizeHighErrorRate", "severity": "warning",
                               "job": JOB, "function": FLAKY}
    annotations = alert["annotations"]
    assert annotations["summary"] == f"amorsize: high error rate for {FLAKY}"
    assert annotations["description"].startswith(f"100% of the executions of {FLAKY} "
                                                 f"(job {JOB}) failed")
    assert annotations["runbook_url"] == "docs/runbooks.md#amorsizehigherrorrate"
    assert annotations["dashboard_url"] == (
        "http://127.0.0.1:3000/d/amorsize/amorsize"
        f"?var-job={JOB}&var-function=amorsize.demo%3Aflaky_item")
    # Prometheus itself saw it firing (the dashboard's alert annotations read ALERTS).
    assert any(s["metric"].get("alertname") == "AmorsizeHighErrorRate" for s in firing), firing
    assert {s["metric"]["alertname"] for s in annotated} >= {"AmorsizeHighErrorRate"}, annotated
    # Runs that all fail set no speedup or efficiency: those alerts must stay quiet.
    assert not {s["metric"].get("alertname") for s in firing} & {
        "AmorsizeSpeedupBelowEstimate", "AmorsizeLowParallelEfficiency"}, firing
    assert demo.process.returncode == 0, demo.output()
