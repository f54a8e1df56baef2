"""Read the provisioned Grafana dashboard and turn its targets into runnable PromQL.

Also reads prometheus/recording_rules.yml, so a query on a recorded series can be
traced back to the amorsize metrics it is computed from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.promql import metric_names

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_PATH = ROOT / "grafana" / "dashboards" / "amorsize.json"
RECORDING_RULES_PATH = ROOT / "prometheus" / "recording_rules.yml"

# Grafana built-ins, with values that suit a Prometheus scraped every few seconds.
BUILTIN_DEFAULTS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $name, ${name}, ${name:format} and the deprecated [[name]] / [[name:format]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    """Return the dashboard JSON as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, including rows and the panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield (panel, target) for every query target that has a PromQL expression."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel, target


def variable_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (variable name, query string) for every query template variable."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        found.append((variable["name"], query or variable.get("definition", "")))
    return found


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables in expr; an unknown variable raises KeyError."""
    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return values[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries(
    substitutions: Mapping[str, str],
    dashboard: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Return (panel title, expr) for every target, variables substituted.

    `substitutions` maps variable names without `$` (e.g. {"function": ".*"}) and may
    override the built-ins in BUILTIN_DEFAULTS. Values are inserted verbatim, so a
    regex-matched variable such as `function` takes a regex.
    """
    dashboard = load_dashboard() if dashboard is None else dashboard
    values = {**BUILTIN_DEFAULTS, **substitutions}
    return [(panel["title"], substitute(target["expr"], values))
            for panel, target in iter_targets(dashboard)]


def annotation_queries(
    substitutions: Mapping[str, str],
    dashboard: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Return (annotation name, expr) for every PromQL annotation, variables substituted."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    values = {**BUILTIN_DEFAULTS, **substitutions}
    return [(annotation["name"], substitute(annotation["expr"], values))
            for annotation in dashboard.get("annotations", {}).get("list", [])
            if annotation.get("expr")]


def recording_rules(path: Path = RECORDING_RULES_PATH) -> dict[str, str]:
    """Return {recorded series name: expression} of the recording rules file."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {rule["record"]: rule["expr"] for group in groups for rule in group["rules"]
            if "record" in rule}


def source_metrics(expr: str, rules: Mapping[str, str] | None = None) -> set[str]:
    """The series names `expr` reads, recorded series replaced by what they are made of."""
    rules = recording_rules() if rules is None else rules
    found: set[str] = set()
    pending = list(metric_names(expr))
    while pending:
        name = pending.pop()
        if name in rules:
            pending.extend(metric_names(rules[name]) - found - {name})
        else:
            found.add(name)
    return found
