"""Offline checks of the observability stack: compose file, Prometheus, Grafana.

Needs `docker-compose` and `promtool` on PATH; a missing binary fails the test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from amorsize import names
from tests.dashboard import (
    BUILTIN_DEFAULTS,
    dashboard_queries,
    iter_panels,
    iter_targets,
    load_dashboard,
    variable_queries,
)
from tests.promql import base_metric_name, label_names, metric_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = ROOT / "prometheus"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

AMORSIZE_NAME = re.compile(r"amorsize_[a-z_]+")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
# ${VAR} or ${VAR:?message}; a ${VAR:-default} would ship a literal default.
VARIABLE_REFERENCE = re.compile(r"^\$\{\w+(?::?\?[^}]*)?\}$")
SCRAPE_LABELS = {"job", "instance", "le"}

SPECS = {spec.name: spec for spec in names.PROMETHEUS_METRICS}
HISTOGRAMS = {name for name, spec in SPECS.items() if spec.type == "histogram"}
KNOWN_LABELS = {label for spec in SPECS.values() for label in spec.labels} | SCRAPE_LABELS


def _binary(name: str) -> str:
    """Return the path of a required binary, failing the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; install it (CI does)")
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository root and capture its output."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _yaml(path: Path) -> dict:
    """Parse a YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _resolve(series: str) -> str:
    """Map a series name to its names.py metric, rejecting misuse of histograms."""
    base = base_metric_name(series, HISTOGRAMS)
    assert base in SPECS, f"{series} is not a metric in amorsize/names.py"
    if base in HISTOGRAMS:
        assert base != series, f"{series} is a histogram: query _bucket, _sum or _count"
    return base


def _check_expr(expr: str) -> set[str]:
    """Check one expression against names.py and return the metrics it uses."""
    series = {name for name in metric_names(expr) if name.startswith(names.METRIC_PREFIX)}
    assert series == set(AMORSIZE_NAME.findall(expr)), f"tokenizer disagrees on {expr!r}"
    unknown_labels = label_names(expr) - KNOWN_LABELS
    assert not unknown_labels, f"unknown labels {unknown_labels} in {expr!r}"
    return {_resolve(name) for name in series}


def _alert_rules() -> list[dict]:
    """Return the alerting rules of prometheus/alerts.yml."""
    groups = _yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# ------------------------------------------------------------------ docker-compose


def test_compose_config_is_valid() -> None:
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(16)}
    result = _run(_binary("docker-compose"), "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode == 0, result.stderr


def test_compose_requires_grafana_password() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    result = _run(_binary("docker-compose"), "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_compose_ports_images_and_secrets() -> None:
    services = _yaml(COMPOSE)["services"]
    assert {"demo", "prometheus", "grafana", "jaeger"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
        image = service.get("image")
        if image is not None:
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            assert tag and tag != "latest", f"{name}: pin the image tag of {image}"
        else:
            assert "build" in service, f"{name}: neither image nor build"
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for key, value in environment.items():
            if any(word in key.upper() for word in SECRET_WORDS):
                assert VARIABLE_REFERENCE.match(str(value)), f"{name}: {key} is a literal"


def test_compose_wires_the_demo() -> None:
    services = _yaml(COMPOSE)["services"]
    command = services["demo"]["command"]
    command = command if isinstance(command, list) else command.split()
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert command[:2] == ["amorsize", "demo"]
    assert flags["--metrics-port"] == "9464"
    assert flags["--metrics-addr"] == "0.0.0.0"
    assert flags["--otlp-endpoint"] == "http://jaeger:4318"
    prometheus_flags = services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in prometheus_flags
    assert any(flag.startswith("--config.file=") for flag in prometheus_flags)
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana_env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_dockerfile_runs_the_demo_as_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any('pip install ".[prometheus,otel]"' in line for line in instructions)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert instructions[-1] == 'CMD ["amorsize", "demo"]'
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".env"} <= set(ignored)


# ------------------------------------------------------------------ Prometheus


@pytest.mark.parametrize("args", [
    ("check", "config", "prometheus/prometheus.yml"),
    ("check", "rules", "prometheus/alerts.yml"),
    ("test", "rules", "prometheus/alerts_test.yml"),
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool(args: tuple[str, ...]) -> None:
    result = _run(_binary("promtool"), *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_targets_the_demo() -> None:
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    demo = jobs["amorsize-demo"]
    assert demo["static_configs"][0]["targets"] == ["demo:9464"]
    assert demo["scrape_interval"] == "2s"
    assert "prometheus" in jobs
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_use_known_metrics_and_are_annotated() -> None:
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} == {
        "AmorsizeHighErrorRate", "AmorsizeLowParallelEfficiency",
        "AmorsizeSpeedupBelowEstimate", "AmorsizeExecutionStuck", "AmorsizeTargetDown",
    }
    for rule in rules:
        _check_expr(rule["expr"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_has_a_unit_test() -> None:
    tests = _yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert fired == alerts
    assert quiet == alerts


# ------------------------------------------------------------------ Grafana


def _datasource_uids() -> set[str]:
    """Return the uids of the provisioned datasources."""
    return {source["uid"] for source in _yaml(DATASOURCES)["datasources"]}


def test_datasources_provisioning() -> None:
    sources = {source["uid"]: source for source in _yaml(DATASOURCES)["datasources"]}
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger"}]
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "http://jaeger:16686"


def test_dashboard_provider_points_at_mounted_dashboards() -> None:
    providers = _yaml(DASHBOARD_PROVIDERS)["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    assert providers[0]["type"] == "file"
    compose = _yaml(COMPOSE)["services"]["grafana"]["volumes"]
    assert any(v.endswith(":/var/lib/grafana/dashboards:ro") for v in compose)


def test_dashboard_is_provisionable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "amorsize"
    assert dashboard["title"] == "amorsize"
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["refresh"] == "5s"
    uids = _datasource_uids()
    panel_ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard):
        title = panel.get("title")
        assert title, f"panel {panel.get('id')} has no title"
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("targets"), f"{title}: no targets"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, title
            assert target.get("expr"), title
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refId"


def test_dashboard_function_variable() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    function = variables["function"]
    assert function["type"] == "query"
    assert function["multi"] is True and function["includeAll"] is True
    assert function["datasource"]["uid"] in _datasource_uids()
    assert dict(variable_queries(dashboard))["function"] == (
        f"label_values({names.EXECUTIONS_TOTAL}, {names.LABEL_FUNCTION})")


def test_dashboard_metrics_match_names_module() -> None:
    dashboard = load_dashboard()
    used: set[str] = set()
    for panel, target in iter_targets(dashboard):
        expr = target["expr"]
        metrics = _check_expr(expr)
        assert metrics, f"{panel['title']}: no amorsize metric in {expr!r}"
        used |= metrics
        for metric in metrics:
            filtered = f'{names.LABEL_FUNCTION}=~"$function"' in expr
            has_label = names.LABEL_FUNCTION in SPECS[metric].labels
            assert filtered == has_label, f"{panel['title']}: $function filter on {metric}"
    for _, query in variable_queries(dashboard):
        assert set(AMORSIZE_NAME.findall(query)) <= set(SPECS), query
    missing = set(SPECS) - used
    assert not missing, f"metrics with no dashboard panel: {sorted(missing)}"


def test_dashboard_exemplars_on_latency_histograms() -> None:
    dashboard = load_dashboard()
    for _, target in iter_targets(dashboard):
        expr = target["expr"]
        for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
            if f"{metric}_bucket" in expr:
                assert target.get("exemplar") is True, expr
    heatmaps = [p for p in iter_panels(dashboard) if p["type"] == "heatmap"]
    assert [t["format"] for p in heatmaps for t in p["targets"]] == ["heatmap"]


def test_dashboard_queries_are_substituted() -> None:
    queries = dashboard_queries({"function": ".*"})
    assert len(queries) == sum(1 for _ in iter_targets(load_dashboard()))
    for title, expr in queries:
        assert title and "$" not in expr and "[[" not in expr, (title, expr)
    assert any(f"[{BUILTIN_DEFAULTS['__rate_interval']}]" in expr for _, expr in queries)
    with pytest.raises(KeyError):
        dashboard_queries({})


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    queries = dashboard_queries({"function": ".*"})
    rules = [{"record": f"dashboard:query_{i}", "expr": expr}
             for i, (_, expr) in enumerate(queries)]
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(_binary("promtool"), "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_json_is_tidy() -> None:
    text = (ROOT / "grafana" / "dashboards" / "amorsize.json").read_text(encoding="utf-8")
    assert json.loads(text) == load_dashboard()
    assert "${DS_" not in text, "exported dashboards with __inputs cannot be provisioned"


# ------------------------------------------------------------------ PromQL helper


@pytest.mark.parametrize(("expr", "metrics", "labels"), [
    ('sum by (le) (rate(a_bucket{function=~"$function"}[$__rate_interval]))',
     {"a_bucket"}, {"le", "function"}),
    ("rate(a_sum[5m]) / ignoring(x) rate(a_count[5m]) > 0.5e1",
     {"a_sum", "a_count"}, {"x"}),
    ('x < 0.5 and on (job) y offset 5m', {"x", "y"}, {"job"}),
    ('{__name__="up", job="demo"} == 0', {"up"}, {"job"}),
    ('sum(increase(z{l="a(b) or c"}[1m:10s])) without (i)', {"z"}, {"l", "i"}),
])
def test_promql_helper(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert metric_names(expr) == metrics
    assert label_names(expr) == labels
    assert base_metric_name("amorsize_chunk_duration_seconds_count", HISTOGRAMS) == (
        names.CHUNK_DURATION_SECONDS)
    assert base_metric_name("amorsize_executions_total", HISTOGRAMS) == names.EXECUTIONS_TOTAL
