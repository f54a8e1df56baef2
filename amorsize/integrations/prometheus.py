"""Prometheus metrics for amorsize runs: PrometheusHook, a /metrics server, Pushgateway.

    from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server
    start_metrics_server(port=9464)                    # serves http://127.0.0.1:9464/metrics
    execute(func, data, hooks=PrometheusHook())

The metric names, types and labels are the ones in `amorsize.names.PROMETHEUS_METRICS`.
prometheus_client is imported lazily: importing this module never needs it, using it
does (`pip install "amorsize[prometheus]"`). Nothing is registered until a hook is
created.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from amorsize import names
from amorsize.hooks import Hook, HookCallback, HookContext, HookEvent, HookManager

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "amorsize[prometheus]"'

# Chunks of about a millisecond up to ten minutes.
CHUNK_DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf,
)
# Whole execute() calls: from a few milliseconds to an hour.
EXECUTION_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, math.inf,
)
# Deciding how to run (sampling a few items included).
OPTIMIZATION_DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf,
)
_BUCKETS = {
    names.CHUNK_DURATION_SECONDS: CHUNK_DURATION_BUCKETS,
    names.EXECUTION_DURATION_SECONDS: EXECUTION_DURATION_BUCKETS,
    names.OPTIMIZATION_DURATION_SECONDS: OPTIMIZATION_DURATION_BUCKETS,
}

# A manager held for its last hook-error count is let go after this long at the latest.
_HOLD_SECONDS = 60.0


def _prometheus_client() -> ModuleType:
    """Import prometheus_client, or raise ImportError naming the extra to install."""
    try:
        import prometheus_client
    except ImportError as error:
        raise ImportError(
            f"the Prometheus integration needs prometheus_client: {INSTALL_HINT}"
        ) from error
    return prometheus_client


def _otel_trace() -> Optional[ModuleType]:
    """Return opentelemetry.trace if the OpenTelemetry API is installed, else None."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def _counter_base(name: str) -> str:
    """prometheus_client adds `_total` to counters; strip it from a names.py name."""
    return name[: -len("_total")] if name.endswith("_total") else name


def _number(value: Any) -> Optional[float]:
    """Return `value` as a finite float, or None (None, NaN, inf, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------- hook errors


class _HookErrorsCollector:
    """amorsize_hook_errors_total: the deltas of the tracked managers' error counts."""

    def __init__(self, spec: names.MetricSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._totals = {event.value: 0 for event in HookEvent}
        self._seen: weakref.WeakKeyDictionary[HookManager, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        # Strong references until a manager's POST_EXECUTE callbacks have all run.
        self._held: dict[HookManager, tuple[int, float]] = {}

    def track(self, manager: HookManager) -> None:
        """Count the hook errors of `manager` (all of them, from its creation on)."""
        with self._lock:
            if manager not in self._seen:
                self._seen[manager] = {}

    def sync(self) -> None:
        """Add what the tracked managers counted since the last sync."""
        with self._lock:
            for manager, last in list(self._seen.items()):
                for event, count in manager.get_error_counts().items():
                    delta = count - last.get(event, 0)
                    if delta > 0:
                        self._totals[event] = self._totals.get(event, 0) + delta
                        last[event] = count
                held = self._held.get(manager)
                if held is not None and (
                    manager.get_call_count(HookEvent.POST_EXECUTE) > held[0]
                    or time.monotonic() - held[1] > _HOLD_SECONDS
                ):
                    del self._held[manager]

    def hold(self) -> None:
        """Keep the tracked managers alive until their running POST_EXECUTE is counted."""
        now = time.monotonic()
        with self._lock:
            for manager in list(self._seen.keys()):
                calls = manager.get_call_count(HookEvent.POST_EXECUTE)
                self._held.setdefault(manager, (calls, now))

    def _family(self, with_samples: bool) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            _counter_base(self.spec.name), self.spec.documentation, labels=self.spec.labels
        )
        if with_samples:
            with self._lock:
                totals = dict(self._totals)
            for event, total in sorted(totals.items()):
                family.add_metric([event], total)
        return family

    def describe(self) -> Iterator[Metric]:
        """The metric family without samples (for the registry's duplicate check)."""
        yield self._family(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        """Sync with the managers, then yield the counter."""
        self.sync()
        yield self._family(with_samples=True)


# ---------------------------------------------------------------- the metric set


class _MetricSet:
    """Every metric of names.PROMETHEUS_METRICS, registered once on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        client = _prometheus_client()
        from amorsize import __version__

        self.collectors: dict[str, Any] = {}
        for spec in names.PROMETHEUS_METRICS:
            collector: Any
            if spec.name == names.HOOK_ERRORS_TOTAL:
                collector = _HookErrorsCollector(spec)
            elif spec.type == "counter":
                collector = client.Counter(_counter_base(spec.name), spec.documentation,
                                           spec.labels, registry=None)
            elif spec.type == "gauge":
                collector = client.Gauge(spec.name, spec.documentation, spec.labels,
                                         registry=None)
            elif spec.type == "histogram":
                collector = client.Histogram(spec.name, spec.documentation, spec.labels,
                                             registry=None, buckets=_BUCKETS[spec.name])
            else:  # pragma: no cover - names.py only uses the three types
                raise ValueError(f"unknown metric type {spec.type!r} for {spec.name}")
            self.collectors[spec.name] = collector
        registered: list[Any] = []
        try:
            for collector in self.collectors.values():
                registry.register(collector)
                registered.append(collector)
        except ValueError as error:
            for collector in registered:
                registry.unregister(collector)
            raise ValueError(
                f"the registry already has a metric named like amorsize's ({error}); "
                "pass a registry without them"
            ) from error
        c = self.collectors
        self.executions = c[names.EXECUTIONS_TOTAL]
        self.execution_duration = c[names.EXECUTION_DURATION_SECONDS]
        self.optimization_duration = c[names.OPTIMIZATION_DURATION_SECONDS]
        self.items = c[names.ITEMS_PROCESSED_TOTAL]
        self.chunks = c[names.CHUNKS_PROCESSED_TOTAL]
        self.chunk_duration = c[names.CHUNK_DURATION_SECONDS]
        self.errors = c[names.ERRORS_TOTAL]
        self.in_progress = c[names.EXECUTIONS_IN_PROGRESS]
        self.workers = c[names.WORKERS]
        self.chunksize = c[names.CHUNKSIZE]
        self.throughput = c[names.THROUGHPUT_ITEMS_PER_SECOND]
        self.speedup_estimated = c[names.SPEEDUP_ESTIMATED]
        self.speedup_actual = c[names.SPEEDUP_ACTUAL]
        self.efficiency = c[names.PARALLEL_EFFICIENCY_RATIO]
        self.hook_errors: _HookErrorsCollector = c[names.HOOK_ERRORS_TOTAL]
        c[names.BUILD_INFO].labels(__version__).set(1)

    def collect(self) -> Iterator[Metric]:
        """Yield every amorsize metric family (what a push sends)."""
        for collector in self.collectors.values():
            yield from collector.collect()


_METRIC_SETS: weakref.WeakKeyDictionary[Any, _MetricSet] = weakref.WeakKeyDictionary()
_METRIC_SETS_LOCK = threading.Lock()


def _metric_set(registry: CollectorRegistry) -> _MetricSet:
    """Return the metric set of `registry`, creating and registering it the first time."""
    with _METRIC_SETS_LOCK:
        metrics = _METRIC_SETS.get(registry)
        if metrics is None:
            metrics = _MetricSet(registry)
            _METRIC_SETS[registry] = metrics
        return metrics


class _PushView:
    """A collector over the amorsize metrics, optionally only one function's series."""

    def __init__(self, metrics: _MetricSet, function: Optional[str]) -> None:
        self.metrics = metrics
        self.function = function

    def collect(self) -> Iterator[Metric]:
        """Yield the amorsize families without `_created` samples (and other functions)."""
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


# ---------------------------------------------------------------- the hook


@dataclass
class _Run:
    """What the hook keeps for one running execute() (keyed by execution_id)."""

    function: str
    items: Any
    chunks: Any
    chunk_duration: Any
    throughput: Any
    counted_in_progress: bool
    exemplar: Optional[dict[str, str]] = None


class PrometheusHook(Hook):
    """Maintain the amorsize Prometheus metrics from the hook events of each run.

    `registry`: where the metrics live (prometheus_client's default REGISTRY if None).
    Hooks on the same registry share one set of metrics. Items, chunks and throughput
    are updated per finished chunk, live; the rest at the start and end of each run.

    Exemplars: when an OpenTelemetry span is current and sampled (the amorsize
    OpenTelemetry integration's `amorsize.execute` span or the caller's own), the
    duration histograms carry `{trace_id, span_id}` (OpenMetrics exposition only).
    `exemplars=False` turns this off.

    Pushgateway (`pushgateway="host:port"` or a URL): after every run the amorsize
    metrics are pushed with `pushadd_to_gateway` (HTTP POST): it replaces only the
    amorsize metric families of the group, so metrics a batch script pushes itself to
    the same group survive (a PUT would delete them). Grouping key: `job` plus, by
    default, `function` = the run's `module:qualname`, and only that function's series
    are pushed, so every function keeps its own group with the values of the last
    process that ran it. With `grouping_key={...}` given, that fixed key is used and
    the series of all functions are pushed. A push waits at most `push_timeout`
    seconds; a failure is logged as a warning and never fails the run.
    `_created` samples are not pushed.

    Cancelled runs (status "cancelled") count in executions_total, not errors_total.
    """

    def __init__(
        self,
        registry: Optional[CollectorRegistry] = None,
        *,
        pushgateway: Optional[str] = None,
        job: str = "amorsize",
        grouping_key: Optional[Mapping[str, str]] = None,
        push_timeout: float = 2.0,
        exemplars: bool = True,
    ) -> None:
        client = _prometheus_client()
        if registry is None:
            registry = client.REGISTRY
        elif not isinstance(registry, client.CollectorRegistry):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, "
                f"got {type(registry).__name__}"
            )
        if pushgateway is not None and not isinstance(pushgateway, str):
            raise TypeError(f"pushgateway must be 'host:port' or a URL string, "
                            f"got {type(pushgateway).__name__}")
        if pushgateway is not None and not pushgateway.strip():
            raise ValueError("pushgateway must not be empty; pass None for no push")
        if not isinstance(job, str) or not job:
            raise ValueError(f"job must be a non-empty string, got {job!r}")
        self.grouping_key = _validate_grouping_key(grouping_key)
        push_timeout_value = _number(push_timeout)
        if push_timeout_value is None or push_timeout_value <= 0:
            raise ValueError(f"push_timeout must be a number of seconds > 0, "
                             f"got {push_timeout!r}")
        self.registry = registry
        self.pushgateway = pushgateway
        self.job = job
        self.push_timeout = push_timeout_value
        self.metrics = _metric_set(registry)
        self._trace = _otel_trace() if exemplars else None
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ Hook API

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """The callbacks for PRE_EXECUTE, ON_CHUNK_COMPLETE, ON_PROGRESS, ON_ERROR and
        POST_EXECUTE."""
        return {
            HookEvent.PRE_EXECUTE: self._on_pre_execute,
            HookEvent.ON_CHUNK_COMPLETE: self._on_chunk_complete,
            HookEvent.ON_PROGRESS: self._on_progress,
            HookEvent.ON_ERROR: self._on_error,
            HookEvent.POST_EXECUTE: self._on_post_execute,
        }

    def attached(self, manager: HookManager) -> None:
        """Count the hook errors of `manager` in amorsize_hook_errors_total."""
        self.metrics.hook_errors.track(manager)

    # ------------------------------------------------------------------ helpers

    def _exemplar(self) -> Optional[dict[str, str]]:
        """{trace_id, span_id} of the current sampled OpenTelemetry span, if any."""
        trace = self._trace
        if trace is None:
            return None
        context = trace.get_current_span().get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return {"trace_id": trace.format_trace_id(context.trace_id),
                "span_id": trace.format_span_id(context.span_id)}

    def _new_run(self, function: str, counted_in_progress: bool) -> _Run:
        m = self.metrics
        return _Run(
            function=function,
            items=m.items.labels(function),
            chunks=m.chunks.labels(function),
            chunk_duration=m.chunk_duration.labels(function),
            throughput=m.throughput.labels(function),
            counted_in_progress=counted_in_progress,
        )

    def _run_of(self, ctx: HookContext) -> _Run:
        """The state of ctx's run; created here if this hook missed PRE_EXECUTE."""
        key = ctx.metadata.get("execution_id", "")
        run = self._runs.get(key)
        if run is None:
            run = self._new_run(_function_of(ctx), counted_in_progress=False)
            with self._lock:
                run = self._runs.setdefault(key, run)
        return run

    # ------------------------------------------------------------------ events

    def _on_pre_execute(self, ctx: HookContext) -> None:
        m = self.metrics
        function = _function_of(ctx)
        run = self._new_run(function, counted_in_progress=True)
        run.exemplar = self._exemplar()
        with self._lock:
            self._runs[ctx.metadata.get("execution_id", "")] = run
        m.in_progress.labels(function).inc()
        for status in names.STATUSES:
            m.executions.labels(function, status)  # start every status at 0
        m.workers.labels(function).set(ctx.n_jobs)
        m.chunksize.labels(function).set(ctx.chunksize)
        estimated = _number(ctx.metadata.get("estimated_speedup"))
        if estimated is not None:
            m.speedup_estimated.labels(function).set(estimated)
        optimization = _number(ctx.metadata.get("optimization_seconds"))
        if optimization is not None and optimization >= 0:
            m.optimization_duration.labels(function).observe(optimization, run.exemplar)
        m.hook_errors.sync()

    def _on_chunk_complete(self, ctx: HookContext) -> None:
        run = self._run_of(ctx)
        exemplar = self._exemplar()
        if exemplar is not None:
            run.exemplar = exemplar
        else:
            exemplar = run.exemplar
        run.items.inc(ctx.chunk_size)
        run.chunks.inc()
        run.chunk_duration.observe(max(0.0, ctx.chunk_time), exemplar)
        if ctx.elapsed_time > 0:
            run.throughput.set(ctx.items_completed / ctx.elapsed_time)

    def _on_progress(self, ctx: HookContext) -> None:
        self._run_of(ctx).throughput.set(ctx.throughput_items_per_sec)
        self.metrics.hook_errors.sync()

    def _on_error(self, ctx: HookContext) -> None:
        if ctx.metadata.get("status") == names.STATUS_CANCELLED:
            return
        error_type = ctx.metadata.get("error_type")
        if not isinstance(error_type, str) or not error_type:
            error_type = type(ctx.error).__name__ if ctx.error is not None else "Unknown"
        self.metrics.errors.labels(_function_of(ctx), error_type).inc()

    def _on_post_execute(self, ctx: HookContext) -> None:
        m = self.metrics
        with self._lock:
            run = self._runs.pop(ctx.metadata.get("execution_id", ""), None)
        function = run.function if run is not None else _function_of(ctx)
        status = ctx.metadata.get("status") or names.STATUS_SUCCESS
        m.executions.labels(function, status).inc()
        exemplar = self._exemplar() or (run.exemplar if run is not None else None)
        m.execution_duration.labels(function).observe(max(0.0, ctx.elapsed_time), exemplar)
        m.throughput.labels(function).set(ctx.throughput_items_per_sec)
        if status == names.STATUS_SUCCESS:
            actual = _number(ctx.metadata.get("actual_speedup"))
            if actual is not None:
                m.speedup_actual.labels(function).set(actual)
            efficiency = _number(ctx.metadata.get("parallel_efficiency"))
            if efficiency is not None:
                m.efficiency.labels(function).set(efficiency)
        if run is not None and run.counted_in_progress:
            m.in_progress.labels(function).dec()
        m.hook_errors.sync()
        m.hook_errors.hold()
        if self.pushgateway is not None:
            self.push(function)

    # ------------------------------------------------------------------ Pushgateway

    def push(self, function: Optional[str] = None) -> bool:
        """Push the amorsize metrics to the Pushgateway now; return whether it worked.

        With the default grouping key, `function` selects the group (and the series
        pushed); None pushes every function's series under `job` alone.
        """
        if self.pushgateway is None:
            raise ValueError("push() needs PrometheusHook(pushgateway='host:port')")
        client = _prometheus_client()
        if self.grouping_key is not None:
            key, view = dict(self.grouping_key), _PushView(self.metrics, None)
        elif function is not None:
            key, view = {names.LABEL_FUNCTION: function}, _PushView(self.metrics, function)
        else:
            key, view = {}, _PushView(self.metrics, None)
        try:
            client.pushadd_to_gateway(self.pushgateway, job=self.job, registry=view,
                                      grouping_key=key, timeout=self.push_timeout)
        except Exception as error:
            logger.warning(
                "amorsize: could not push metrics to the Pushgateway at %s (job %r): %s; "
                "the run itself is unaffected", self.pushgateway, self.job, error,
            )
            return False
        return True


def _function_of(ctx: HookContext) -> str:
    """The run's `module:qualname` label value."""
    function = ctx.metadata.get("function")
    return function if isinstance(function, str) and function else "unknown"


def _validate_grouping_key(grouping_key: Optional[Mapping[str, str]]) -> Optional[dict[str, str]]:
    """Check a Pushgateway grouping key: label names to string values, no `job`."""
    if grouping_key is None:
        return None
    if not isinstance(grouping_key, Mapping):
        raise TypeError(f"grouping_key must be a mapping of label names to values, "
                        f"got {type(grouping_key).__name__}")
    checked: dict[str, str] = {}
    for label, value in grouping_key.items():
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
            raise ValueError(f"grouping_key label {label!r} is not a valid label name")
        if label == "job" or label.startswith("__"):
            raise ValueError(f"grouping_key must not contain {label!r}; use job= for the job")
        if label == names.LABEL_FUNCTION:
            raise ValueError(f"grouping_key must not contain {label!r}: leave grouping_key "
                             "unset for one group per function")
        if not isinstance(value, str):
            raise TypeError(f"grouping_key[{label!r}] must be a string, "
                            f"got {type(value).__name__}")
        checked[label] = value
    return checked


# ---------------------------------------------------------------- /metrics server


class MetricsServer:
    """A running /metrics HTTP server (a daemon thread); stop() ends it."""

    def __init__(self, httpd: Any, thread: threading.Thread, scheme: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.scheme = scheme
        self.addr = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        self._stopped = False

    @property
    def url(self) -> str:
        """The URL of the metrics endpoint, e.g. http://127.0.0.1:9464/metrics."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MetricsServer({self.url!r})"


def start_metrics_server(
    port: int,
    addr: str = "127.0.0.1",
    registry: Optional[CollectorRegistry] = None,
    *,
    certfile: Optional[str] = None,
    keyfile: Optional[str] = None,
    client_cafile: Optional[str] = None,
    client_capath: Optional[str] = None,
    client_auth_required: bool = False,
) -> MetricsServer:
    """Serve `registry` (default REGISTRY) at /metrics on addr:port in a daemon thread.

    prometheus_client's exposition: the OpenMetrics format (with exemplars) when the
    scraper asks for it, the text format otherwise. Binds loopback unless told
    otherwise; `port=0` picks a free port (see `.port`). `certfile` and `keyfile`
    turn on HTTPS; the `client_*` options ask for client certificates. A port in use
    raises OSError naming it.
    """
    client = _prometheus_client()
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535 (0 = any free port), "
                         f"got {port!r}")
    if not isinstance(addr, str) or not addr:
        raise ValueError(f"addr must be a host name or IP address, got {addr!r}")
    if registry is None:
        registry = client.REGISTRY
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile must be given together for HTTPS")
    for option, path in (("certfile", certfile), ("keyfile", keyfile),
                         ("client_cafile", client_cafile)):
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{option} {path!r} is not a file")
    if certfile is None and (client_cafile or client_capath or client_auth_required):
        raise ValueError("client_cafile, client_capath and client_auth_required need "
                         "certfile and keyfile (HTTPS)")
    try:
        httpd, thread = client.start_http_server(
            port, addr=addr, registry=registry, certfile=certfile, keyfile=keyfile,
            client_cafile=client_cafile, client_capath=client_capath,
            client_auth_required=client_auth_required,
        )
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise OSError(error.errno, f"cannot serve metrics on {addr}:{port}: port {port} "
                          "is already in use (choose another port, or port=0 for a free one)"
                          ) from error
        raise OSError(error.errno, f"cannot serve metrics on {addr}:{port}: "
                      f"{error.strerror or error}") from error
    return MetricsServer(httpd, thread, "https" if certfile else "http")


__all__ = [
    "CHUNK_DURATION_BUCKETS",
    "EXECUTION_DURATION_BUCKETS",
    "INSTALL_HINT",
    "OPTIMIZATION_DURATION_BUCKETS",
    "MetricsServer",
    "PrometheusHook",
    "start_metrics_server",
]

