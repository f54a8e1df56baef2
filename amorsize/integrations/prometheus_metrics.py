"""The amorsize metrics on one prometheus_client registry, made from `names.METRICS`.

One `MetricSet` per registry, registered the first time a hook uses that registry
(nothing at import). Two bounds keep a long-lived process cheap to scrape:
- the distinct `function` label values are capped (default 1,000 per registry; later
  functions are counted as `function="other"`), so a program that makes functions on
  the fly cannot grow the series without bound;
- `amorsize_hook_errors_total` reads one process-wide count at scrape time
  (`hooks.hook_error_counts()`), as prometheus_client's own process collector reads
  its figures: its cost does not grow with the runs that failed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from amorsize import names
from amorsize.hooks import hook_error_counts

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

INSTALL_HINT = 'pip install "amorsize[prometheus]"'


def prometheus_client() -> ModuleType:
    """Import prometheus_client, or raise ImportError naming the extra to install."""
    try:
        import prometheus_client as client
    except ImportError as error:
        raise ImportError(
            f"the Prometheus integration needs prometheus_client: {INSTALL_HINT}"
        ) from error
    return client


def counter_base(name: str) -> str:
    """prometheus_client adds `_total` to counters; strip it from a names.py name."""
    return name[: -len("_total")] if name.endswith("_total") else name


class HookErrorsCollector:
    """amorsize_hook_errors_total: the process-wide count of hooks that raised."""

    def __init__(self, spec: names.MetricSpec) -> None:
        self.spec = spec

    def _family(self, with_samples: bool) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(counter_base(self.spec.name), self.spec.documentation,
                                     labels=self.spec.labels)
        if with_samples:
            for event, total in sorted(hook_error_counts().items()):
                family.add_metric([event], total)
        return family

    def describe(self) -> Iterator[Metric]:
        """The family without samples (for the registry's duplicate check)."""
        yield self._family(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        """The counter, read now."""
        yield self._family(with_samples=True)


class MetricSet:
    """Every metric of names.METRICS, registered once on one registry."""

    def __init__(self, registry: CollectorRegistry, max_functions: int) -> None:
        client = prometheus_client()
        from amorsize import __version__

        self.max_functions = max_functions
        self._functions: set[str] = set()
        self._lock = threading.Lock()
        self.collectors: dict[str, Any] = {}
        for spec in names.METRICS:
            self.collectors[spec.name] = _collector(client, spec)
        registered: list[Any] = []
        try:
            for collector in self.collectors.values():
                registry.register(collector)
                registered.append(collector)
        except ValueError as error:
            for collector in registered:
                registry.unregister(collector)
            raise ValueError(f"the registry already has a metric named like amorsize's "
                             f"({error}); pass a registry without them") from error
        self.collectors[names.BUILD_INFO].labels(__version__).set(1)

    def __getitem__(self, name: str) -> Any:
        return self.collectors[name]

    def function_label(self, function: str) -> str:
        """`function`, or OTHER_FUNCTION once max_functions distinct values are in use."""
        known = self._functions
        if function in known:
            return function
        with self._lock:
            if function in known or len(known) < self.max_functions:
                known.add(function)
                return function
        return names.OTHER_FUNCTION

    def collect(self) -> Iterator[Metric]:
        """Every amorsize metric family (what a push sends)."""
        for collector in self.collectors.values():
            yield from collector.collect()


def _collector(client: ModuleType, spec: names.MetricSpec) -> Any:
    if spec.name == names.HOOK_ERRORS_TOTAL:
        return HookErrorsCollector(spec)
    if spec.type == "counter":
        return client.Counter(counter_base(spec.name), spec.documentation, spec.labels,
                              registry=None)
    if spec.type == "gauge":
        return client.Gauge(spec.name, spec.documentation, spec.labels, registry=None)
    return client.Histogram(spec.name, spec.documentation, spec.labels, registry=None,
                            buckets=spec.buckets)


_SETS: weakref.WeakKeyDictionary[Any, MetricSet] = weakref.WeakKeyDictionary()
_SETS_LOCK = threading.Lock()


def metric_set(registry: CollectorRegistry,
               max_functions: int = names.DEFAULT_MAX_FUNCTIONS) -> MetricSet:
    """The metric set of `registry`, made and registered the first time."""
    with _SETS_LOCK:
        metrics = _SETS.get(registry)
        if metrics is None:
            metrics = MetricSet(registry, max_functions)
            _SETS[registry] = metrics
        else:
            metrics.max_functions = max(metrics.max_functions, max_functions)
        return metrics


class PushView:
    """A collector over the amorsize metrics, optionally one function's series only."""

    def __init__(self, metrics: MetricSet, function: Optional[str]) -> None:
        self.metrics = metrics
        self.function = function

    def collect(self) -> Iterator[Metric]:
        """The amorsize families without `_created` samples (and other functions)."""
        from prometheus_client.metrics_core import Metric

        for family in self.metrics.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                label = sample.labels.get(names.LABEL_FUNCTION)
                if self.function is not None and label is not None and label != self.function:
                    continue
                kept.add_sample(sample.name, sample.labels, sample.value)
            yield kept
