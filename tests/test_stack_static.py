"""Offline checks of the observability stack: compose file, image, Prometheus rules,
Alertmanager, Grafana.

Needs `docker-compose`, `promtool` and `amtool` on PATH; a missing binary fails the
test. Docker itself is not needed: the stack is checked as files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from amorsize import names
from tests.dashboard import (
    BUILTIN_DEFAULTS,
    annotation_queries,
    dashboard_queries,
    iter_panels,
    iter_targets,
    load_dashboard,
    recording_rules,
    source_metrics,
    variable_queries,
)
from tests.promql import base_metric_name, label_names, metric_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = ROOT / "prometheus"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

AMORSIZE_NAME = re.compile(r"(?<![\w:])amorsize_[a-z_]+")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
# ${VAR} or ${VAR:?message}; a ${VAR:-default} would ship a literal default.
VARIABLE_REFERENCE = re.compile(r"^\$\{\w+(?::?\?[^}]*)?\}$")
SCRAPE_LABELS = {"job", "instance", "le"}
# Series the rules and the dashboard may use besides amorsize's own.
OTHER_SERIES = {"up", "push_time_seconds", "process_start_time_seconds", "ALERTS"}
OTHER_LABELS = {"alertname", "alertstate"}
# The selector filters every dashboard query carries.
JOB_FILTER = 'job=~"$job"'
INSTANCE_FILTER = 'instance=~"$instance"'
FUNCTION_FILTER = f'{names.LABEL_FUNCTION}=~"$function"'
SELECTOR = re.compile(r"(?<![\w:\"])([A-Za-z_:][\w:]*)\s*(?:\{([^{}]*)\})?")
AGGREGATION = re.compile(
    r"\b(?:sum|avg|min|max|count|group|topk|bottomk|quantile|histogram_quantile|stddev|stdvar)"
    r"\s*(?:(?:by|without)\s*\([^()]*\)\s*)?\(")

STACK_SERVICES = {"demo", "prometheus", "alertmanager", "pushgateway", "grafana", "jaeger"}
ALERTS = {
    "AmorsizeHighErrorRate", "AmorsizeLowParallelEfficiency", "AmorsizeSpeedupBelowEstimate",
    "AmorsizeExecutionStuck", "AmorsizeTargetDown", "AmorsizeMetricsAbsent",
    "AmorsizePushOverdue",
}
# Alerts about how runs go: they need recent runs, and enough of them.
RUN_QUALITY_ALERTS = {
    "AmorsizeHighErrorRate", "AmorsizeLowParallelEfficiency", "AmorsizeSpeedupBelowEstimate"}
VOLUME_GATE = "job_instance_function:amorsize_executions:increase10m"

SPECS = {spec.name: spec for spec in names.PROMETHEUS_METRICS}
HISTOGRAMS = {name for name, spec in SPECS.items() if spec.type == "histogram"}
KNOWN_LABELS = ({label for spec in SPECS.values() for label in spec.labels}
                | SCRAPE_LABELS | OTHER_LABELS)
RECORDED = recording_rules()


def _binary(name: str) -> str:
    """Return the path of a required binary, failing the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; install it (scripts/test.sh does, as root)")
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository root and capture its output."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _yaml(path: Path) -> Any:
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
    """Check one expression against names.py and the recording rules; return the
    amorsize metrics it reads (through recorded series too)."""
    series = metric_names(expr)
    direct = {name for name in series if name.startswith(names.METRIC_PREFIX)}
    assert direct == set(AMORSIZE_NAME.findall(expr)), f"tokenizer disagrees on {expr!r}"
    unknown = series - direct - set(RECORDED) - OTHER_SERIES
    assert not unknown, f"unknown series {unknown} in {expr!r}"
    unknown_labels = label_names(expr) - KNOWN_LABELS
    assert not unknown_labels, f"unknown labels {unknown_labels} in {expr!r}"
    return {_resolve(name) for name in source_metrics(expr, RECORDED)
            if name.startswith(names.METRIC_PREFIX)}


def _series_labels(name: str) -> set[str]:
    """The labels a metric or a recorded series has (besides job and instance)."""
    if name in RECORDED:
        grouping = re.search(r"\bby\s*\(([^()]*)\)", RECORDED[name])
        assert grouping, f"recording rule {name} must aggregate by explicit labels"
        return {label.strip() for label in grouping.group(1).split(",")} - SCRAPE_LABELS
    return set(SPECS[_resolve(name)].labels)


def _alert_rules() -> list[dict[str, Any]]:
    """Return the alerting rules of prometheus/alerts.yml."""
    groups = _yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _services() -> dict[str, dict[str, Any]]:
    return dict(_yaml(COMPOSE)["services"])


# ------------------------------------------------------------------ docker-compose


def test_compose_config_is_valid() -> None:
    env = {k: v for k, v in os.environ.items() if "GRAFANA" not in k}
    result = _run(_binary("docker-compose"), "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode == 0, result.stderr


def test_compose_has_no_obsolete_version_key() -> None:
    assert "version" not in _yaml(COMPOSE)


def test_compose_ports_images_and_environment() -> None:
    services = _services()
    assert set(services) == STACK_SERVICES
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
        image = service.get("image")
        if image is not None:
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a full version of {image}"
        else:
            assert "build" in service, f"{name}: neither image nor build"
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for key, value in environment.items():
            if key.endswith("__FILE"):
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}"
            elif any(word in key.upper() for word in SECRET_WORDS):
                assert VARIABLE_REFERENCE.match(str(value)), f"{name}: {key} is a literal"


def test_grafana_admin_password_comes_from_a_secret_file() -> None:
    compose = _yaml(COMPOSE)
    grafana = compose["services"]["grafana"]
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    path = PurePosixPath(environment["GF_SECURITY_ADMIN_PASSWORD__FILE"])
    assert path.parent == PurePosixPath("/run/secrets")
    assert grafana["secrets"] == [path.name]
    source = Path(compose["secrets"][path.name]["file"])
    assert source.parts[:2] == (".", "secrets") or source.parts[0] == "secrets", source
    # The file is the operator's: git and the image build never see it.
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "secrets" in (ROOT / ".dockerignore").read_text().splitlines()
    tracked = _run("git", "ls-files", "secrets").stdout.split()
    assert tracked == [], f"secret files are tracked: {tracked}"


def test_every_service_is_healthchecked_limited_and_rotates_logs() -> None:
    expected_probe = {
        "demo": ":9464/metrics",
        "prometheus": ":9090/-/ready",
        "alertmanager": ":9093/-/ready",
        "pushgateway": ":9091/-/ready",
        "grafana": ":3000/api/health",
        "jaeger": ":14269/",  # Jaeger's admin port
    }
    for name, service in _services().items():
        check = service["healthcheck"]
        test = check["test"]
        assert isinstance(test, list) and test[0] == "CMD", (name, test)
        assert any(expected_probe[name] in part for part in test), (name, test)
        assert {"interval", "timeout", "retries"} <= set(check), name
        assert re.fullmatch(r"\d+[mg]", str(service["mem_limit"])), name
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(logging["options"]), name


def test_services_wait_for_healthy_dependencies_only() -> None:
    services = _services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends.items():
            assert spec == {"condition": "service_healthy"}, (name, dependency)
    assert "depends_on" not in services["prometheus"], "Prometheus needs no other service"
    assert set(services["demo"]["depends_on"]) == {"jaeger"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus", "jaeger"}


def test_compose_wires_the_demo() -> None:
    services = _services()
    demo = services["demo"]
    command = demo["command"]
    command = command if isinstance(command, list) else command.split()
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert command[:2] == ["amorsize", "demo"]
    assert flags["--metrics-port"] == "9464"
    assert flags["--metrics-addr"] == "0.0.0.0"
    assert flags["--otlp-endpoint"] == "http://jaeger:4318"
    assert demo["init"] is True, "PID 1 must forward SIGTERM and reap workers"
    prometheus_flags = services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in prometheus_flags
    assert any(flag.startswith("--config.file=") for flag in prometheus_flags)
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana_env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    jaeger = services["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert any(re.fullmatch(r"--memory\.max-traces=\d+", flag) for flag in jaeger["command"])
    alertmanager = services["alertmanager"]
    assert "./alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "--cluster.listen-address=" in alertmanager["command"]


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume of a service."""
    return [(spec.split(":")[0], spec.split(":")[1]) for spec in service.get("volumes", [])]


def test_no_bind_mount_is_nested_in_a_named_volume() -> None:
    """A bind mount inside a named volume's path leaves a stub in the volume and depends
    on mount order; every bind mount here has a path of its own."""
    named = set(_yaml(COMPOSE)["volumes"])
    for name, service in _services().items():
        mounts = _mounts(service)
        volume_targets = [PurePosixPath(t) for s, t in mounts if s in named]
        for source, target in mounts:
            if source in named:
                continue
            for volume_target in volume_targets:
                assert volume_target not in PurePosixPath(target).parents, (name, target)


def _dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    text = "\n".join(line for line in lines if line and not line.startswith("#"))
    return text.replace("\\\n", " ").splitlines()


def test_dockerfile_installs_dependencies_first_and_runs_as_a_numeric_user() -> None:
    instructions = _dockerfile_instructions()
    assert re.fullmatch(r"FROM python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?",
                        instructions[0]), instructions[0]
    copies = [(i, line) for i, line in enumerate(instructions) if line.startswith("COPY ")]
    assert copies[0][1] == "COPY pyproject.toml ./", "dependencies come from pyproject alone"
    source_copy = next(i for i, line in copies if "amorsize" in line)
    runs = [(i, line) for i, line in enumerate(instructions) if line.startswith("RUN ")]
    dependency_run = next(i for i, line in runs if "pip install -r" in line)
    package_run = next(i for i, line in runs if "pip install --no-deps" in line)
    assert copies[0][0] < dependency_run < source_copy < package_run
    assert not any(line.startswith("COPY . ") for line in instructions)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), users
    assert instructions[-1] == 'CMD ["amorsize", "demo"]'
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".env", "tests", "docs", "benchmarks", "examples", "**/__pycache__",
            ".pytest_cache", ".mypy_cache", ".ruff_cache", "secrets"} <= ignored
    assert not {"README.md", "pyproject.toml", "amorsize"} & ignored


def test_dockerfile_dependency_list_matches_pyproject() -> None:
    import tomllib

    line = next(line for line in _dockerfile_instructions() if "tomllib" in line)
    program = re.search(r'python -c "(.*)" >', line)
    assert program, line
    result = subprocess.run([sys.executable, "-c", program.group(1)], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert result.stdout.split() == [
        *project["build-system"]["requires"], "wheel", *project["project"]["dependencies"],
        *extras["prometheus"], *extras["otel"]]


# ------------------------------------------------------------------ Prometheus


@pytest.mark.parametrize("args", [
    ("check", "config", "prometheus/prometheus.yml"),
    ("check", "rules", "prometheus/recording_rules.yml", "prometheus/alerts.yml"),
    ("test", "rules", "prometheus/alerts_test.yml"),
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool(args: tuple[str, ...]) -> None:
    result = _run(_binary("promtool"), *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config() -> None:
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert config["rule_files"] == ["recording_rules.yml", "alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"amorsize-demo", "pushgateway", "prometheus"}
    demo = jobs["amorsize-demo"]
    assert demo["static_configs"][0]["targets"] == ["demo:9464"]
    assert demo["scrape_interval"] == "2s"
    pushgateway = jobs["pushgateway"]
    assert pushgateway["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert pushgateway["honor_labels"] is True, "keep the pushed job labels"
    for job in (demo, pushgateway):
        drops = [rule for rule in job["metric_relabel_configs"] if rule["action"] == "drop"]
        assert drops == [{"source_labels": ["__name__"], "regex": "amorsize_.+_created",
                          "action": "drop"}], job["job_name"]
    targets = [target for manager in config["alerting"]["alertmanagers"]
               for static in manager["static_configs"] for target in static["targets"]]
    assert targets == ["alertmanager:9093"]


def test_created_series_are_dropped_and_nothing_else() -> None:
    """The drop regex (RE2, anchored like fullmatch) against a real exposition of the
    library with prometheus_client's `_created` series on."""
    from prometheus_client import CollectorRegistry, generate_latest

    from amorsize import execute
    from amorsize.integrations.prometheus import PrometheusHook

    registry = CollectorRegistry()
    execute(abs, range(-20, 20), hooks=PrometheusHook(registry), n_jobs=1, chunksize=5)
    series = {line.split("{")[0].split(" ")[0]
              for line in generate_latest(registry).decode().splitlines()
              if line and not line.startswith("#")}
    regex = re.compile(_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"][0]
                       ["metric_relabel_configs"][0]["regex"])
    dropped = {name for name in series if regex.fullmatch(name)}
    assert dropped and all(name.endswith("_created") for name in dropped), dropped
    assert all(not name.endswith("_created") for name in series - dropped)


def test_alert_rules_use_known_metrics_and_are_annotated() -> None:
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        _check_expr(rule["expr"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"]
        assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        dashboard_url = annotations["dashboard_url"]
        assert dashboard_url.startswith("http://127.0.0.1:3000/d/amorsize/amorsize"), rule
        for label in re.findall(r"\$labels\.(\w+)", dashboard_url):
            assert f"var-{label}={{{{ $labels.{label} | urlquery }}}}" in dashboard_url


def test_run_quality_alerts_need_recent_runs_and_enough_of_them() -> None:
    for rule in _alert_rules():
        if rule["alert"] in RUN_QUALITY_ALERTS:
            assert re.search(re.escape(VOLUME_GATE) + r"\)?\s*>=\s*10\b", rule["expr"]), rule
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    # The last-run gauges never go stale: the speedup alert also needs recent successes.
    assert 'increase(amorsize_executions_total{status="success"}[10m]) > 0' in (
        rules["AmorsizeSpeedupBelowEstimate"]["expr"])
    # No job name is hard-coded anywhere in the rules.
    for rule in rules.values():
        assert "job=" not in rule["expr"].replace(" ", ""), rule["alert"]


def test_target_down_has_an_absent_form() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    assert rules["AmorsizeMetricsAbsent"]["expr"].strip() == f"absent({names.BUILD_INFO})"


def test_recording_rules_are_named_and_used() -> None:
    used = " ".join(rule["expr"] for rule in _alert_rules()) + json.dumps(load_dashboard())
    for record, expr in RECORDED.items():
        level, metric, operation = record.split(":")
        assert level == "_".join(sorted(_series_labels(record) | {"job", "instance"},
                                        key=["job", "instance", "function"].index)), record
        assert metric.startswith(names.METRIC_PREFIX) and operation, record
        _check_expr(expr)
        assert record in used, f"recording rule {record} is used by nothing"


def test_every_alert_has_unit_tests_and_the_semantic_cases_exist() -> None:
    tests = _yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fired == ALERTS
    assert quiet == ALERTS
    test_names = " | ".join(test["name"] for test in tests)
    for semantic in ("a single burst", "a bad run long ago", "a stall",
                     "a handful of executions"):
        assert semantic in test_names, semantic


def test_every_alert_has_a_runbook_section() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(headings) == sorted(ALERTS)


# ------------------------------------------------------------------ Alertmanager


def test_alertmanager_config() -> None:
    result = _run(_binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = _yaml(ALERTMANAGER_CONFIG)
    assert config["route"]["receiver"] in {r["name"] for r in config["receivers"]}
    assert {"alertname", "job", "function"} <= set(config["route"]["group_by"])


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
    internal, external = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert internal == {"name": "trace_id", "datasourceUid": "jaeger"}
    # Viewers who may not use Explore get a plain link to the Jaeger UI; `$$` escapes
    # Grafana's environment-variable expansion of provisioning files.
    assert external == {"name": "trace_id",
                        "url": "http://127.0.0.1:16686/trace/$${__value.raw}",
                        "urlDisplayLabel": "Open in Jaeger UI"}
    assert "127.0.0.1:16686:16686" in _services()["jaeger"]["ports"][0]
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "http://jaeger:16686"


def test_dashboard_provider_points_at_mounted_dashboards() -> None:
    providers = _yaml(DASHBOARD_PROVIDERS)["providers"]
    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]
    assert providers[0]["type"] == "file"
    grafana = _services()["grafana"]
    assert ("./grafana/dashboards", "/etc/grafana/dashboards") in _mounts(grafana)
    assert "./grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/etc/grafana/dashboards/amorsize.json"


def test_dashboard_is_provisionable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "amorsize"
    assert dashboard["title"] == "amorsize"
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["refresh"] == "5s"
    panel_ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard):
        title = panel.get("title")
        assert title, f"panel {panel.get('id')} has no title"
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("targets"), f"{title}: no targets"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
            assert target.get("expr"), title
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refId"
    for annotation in dashboard["annotations"]["list"][1:]:
        assert annotation["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_variables() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "function"]
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["current"]["value"] in _datasource_uids()
    for name in ("job", "instance", "function"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["multi"] is True and variable["includeAll"] is True, name
        assert variable["allValue"] == ".*", name  # also matches pushed series' empty instance
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    queries = dict(variable_queries(dashboard))
    assert queries == {
        "job": f"label_values({names.BUILD_INFO}, job)",
        "instance": f'label_values({names.BUILD_INFO}{{{JOB_FILTER}}}, instance)',
        "function": (f"label_values({names.EXECUTIONS_TOTAL}{{{JOB_FILTER}, "
                     f"{INSTANCE_FILTER}}}, {names.LABEL_FUNCTION})"),
    }


def _check_filters(where: str, expr: str) -> set[str]:
    """Every amorsize or recorded selector of `expr` is filtered by $job and $instance,
    and by $function exactly where the series has a function label."""
    metrics = _check_expr(expr)
    for name, matchers in SELECTOR.findall(expr):
        if not (name.startswith(names.METRIC_PREFIX) or name in RECORDED):
            continue
        assert JOB_FILTER in matchers and INSTANCE_FILTER in matchers, (where, name, expr)
        has_function = names.LABEL_FUNCTION in _series_labels(name)
        assert (FUNCTION_FILTER in matchers) == has_function, (where, name, expr)
    return metrics


def test_dashboard_metrics_match_names_module() -> None:
    dashboard = load_dashboard()
    used: set[str] = set()
    for panel, target in iter_targets(dashboard):
        metrics = _check_filters(panel["title"], target["expr"])
        assert metrics, f"{panel['title']}: no amorsize metric in {target['expr']!r}"
        used |= metrics
    for annotation in dashboard["annotations"]["list"][1:]:
        used |= _check_filters(annotation["name"], annotation["expr"])
    for _, query in variable_queries(dashboard):
        assert set(AMORSIZE_NAME.findall(query)) <= set(SPECS), query
    missing = set(SPECS) - used
    assert not missing, f"metrics with no dashboard panel or annotation: {sorted(missing)}"


def test_gauge_legends_tell_instances_apart() -> None:
    """A query that does not aggregate returns one series per job and instance: its
    legend must name both, or several instances show the same legend twice."""
    for panel, target in iter_targets(load_dashboard()):
        if panel["type"] == "table" or AGGREGATION.search(target["expr"]):
            continue
        legend = target.get("legendFormat", "")
        assert "{{job}}" in legend and "{{instance}}" in legend, (panel["title"], legend)


def test_dashboard_exemplars_on_latency_histograms() -> None:
    dashboard = load_dashboard()
    for panel, target in iter_targets(dashboard):
        if panel["type"] == "table":
            continue  # instant values in table cells: no exemplars
        expr = target["expr"]
        for metric in (names.EXECUTION_DURATION_SECONDS, names.CHUNK_DURATION_SECONDS):
            if f"{metric}_bucket" in expr:
                assert target.get("exemplar") is True, expr
    heatmaps = [p for p in iter_panels(dashboard) if p["type"] == "heatmap"]
    assert [t["format"] for p in heatmaps for t in p["targets"]] == ["heatmap"]


def test_dashboard_annotations() -> None:
    annotations = {a["name"]: a for a in load_dashboard()["annotations"]["list"]}
    restarts = annotations["Process starts"]
    assert "process_start_time_seconds" in restarts["expr"]
    assert restarts["useValueForTime"] is True and restarts["expr"].endswith("* 1000")
    plan = annotations["Plan changes"]
    assert "amorsize_plan_revisions_total" in plan["expr"]
    alerts = annotations["amorsize alerts"]
    assert 'alertname=~"Amorsize.+"' in alerts["expr"]
    assert 'alertstate="firing"' in alerts["expr"]
    for annotation in (restarts, plan, alerts):
        assert annotation["enable"] is True and annotation["titleFormat"]


def test_functions_table_drills_down() -> None:
    dashboard = load_dashboard()
    (table,) = [p for p in iter_panels(dashboard) if p["type"] == "table"]
    targets = {t["refId"]: t for t in table["targets"]}
    for target in targets.values():
        assert target["instant"] is True and target["format"] == "table"
        assert target["expr"].startswith(("sum by (function)", "avg by (function)",
                                          "histogram_quantile(0.95, sum by (le, function)"))
    columns = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
               for o in table["fieldConfig"]["overrides"]}
    shown = {columns[f"Value #{ref}"]["displayName"] for ref in targets}
    assert shown == {"Runs (10 min)", "Error ratio (10 min)", "p95 duration (10 min)",
                     "Last speedup", "Last efficiency", "Efficiency (10 min)"}
    (link,) = columns["function"]["links"]
    assert link["url"].startswith("/d/amorsize/amorsize?")
    assert "var-function=${__value.raw}" in link["url"]
    for variable in ("datasource", "job", "instance"):
        assert f"${{{variable}:queryparam}}" in link["url"]
    assert [t["id"] for t in table["transformations"]][0] == "merge"


def test_dashboard_queries_are_substituted() -> None:
    values = {"function": ".*", "job": ".*", "instance": ".*"}
    queries = dashboard_queries(values)
    assert len(queries) == sum(1 for _ in iter_targets(load_dashboard()))
    for title, expr in queries + annotation_queries(values):
        assert title and "$" not in expr and "[[" not in expr, (title, expr)
    assert any(f"[{BUILTIN_DEFAULTS['__rate_interval']}]" in expr for _, expr in queries)
    with pytest.raises(KeyError):
        dashboard_queries({"function": ".*"})


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    values = {"function": ".*", "job": ".*", "instance": ".*"}
    queries = dashboard_queries(values) + annotation_queries(values)
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
    ("sum by (job) (level:rec_name:rate5m) > 0", {"level:rec_name:rate5m"}, {"job"}),
])
def test_promql_helper(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert metric_names(expr) == metrics
    assert label_names(expr) == labels
    assert base_metric_name("amorsize_chunk_duration_seconds_count", HISTOGRAMS) == (
        names.CHUNK_DURATION_SECONDS)
    assert base_metric_name("amorsize_executions_total", HISTOGRAMS) == names.EXECUTIONS_TOTAL


def test_source_metrics_follow_recording_rules() -> None:
    expr = f"sum by (job, function) ({VOLUME_GATE}) >= 10"
    assert source_metrics(expr, RECORDED) == {names.EXECUTIONS_TOTAL}
    failed = "job_instance_function:amorsize_executions_failed:increase10m"
    assert source_metrics(failed, RECORDED) == {names.EXECUTIONS_TOTAL}
