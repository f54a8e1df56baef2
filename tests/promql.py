"""Tiny PromQL helpers for tests: which metrics and labels does an expression use.

Not a parser; a tokenizer good enough for the dashboard and alert rules of this
project. String literals, Grafana variables, range selectors and numbers are removed
before identifiers are read.
"""

from __future__ import annotations

import re

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "start", "end", "inf", "nan",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_BRACES = re.compile(r"\{([^{}]*)\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE)
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_:][\w:]*")


def _strip_literals(expr: str) -> str:
    """Blank out strings and Grafana variables, keeping the rest of the expression."""
    expr = _STRING.sub('""', expr)
    return _GRAFANA_VAR.sub("0", expr)


def metric_names(expr: str) -> set[str]:
    """Return the metric (series) names an expression selects, suffixes included."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _strip_literals(expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    for match in _IDENT.finditer(text):
        word = match.group()
        rest = text[match.end():].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):
            continue  # keyword or function/aggregation call
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Return the label names used in matchers and by/without/on/ignoring clauses."""
    text = _strip_literals(expr)
    labels: set[str] = set()
    for body in _BRACES.findall(text):
        labels.update(_MATCHER_LABEL.findall(body))
    for body in _GROUPING.findall(text):
        labels.update(part.strip() for part in body.split(",") if part.strip())
    labels.discard("__name__")
    return labels


def base_metric_name(name: str, histograms: set[str] | frozenset[str] = frozenset()) -> str:
    """Strip a histogram series suffix (_bucket, _sum, _count) from a series name.

    With `histograms` given, strip only when the remainder is one of them.
    """
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if not histograms or base in histograms:
                return base
    return name
