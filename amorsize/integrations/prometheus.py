"""Prometheus metrics for amorsize runs: PrometheusHook, a /metrics server, Pushgateway.

    from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server
    start_metrics_server(port=9464)                    # serves http://127.0.0.1:9464/metrics
    execute(func, data, hooks=PrometheusHook())

The metric names, types, labels and buckets are the specs in `amorsize.names.METRICS`.
prometheus_client is imported lazily: importing this module never needs it, using it
does (`pip install "amorsize[prometheus]"`). Nothing is registered until a hook is
created. Each run gets its own observer (`start_run`), so one hook serves concurrent
runs without shared per-run state.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from amorsize import names
from amorsize.hooks import Hook, HookContext, RunObserver
from amorsize.integrations.prometheus_metrics import (
    INSTALL_HINT,
    MetricSet,
    PushView,
    metric_set,
    prometheus_client,
)
from amorsize.integrations.prometheus_server import MetricsServer, start_metrics_server

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

CHUNK_DURATION_BUCKETS = names.CHUNK_DURATION_BUCKETS
EXECUTION_DURATION_BUCKETS = names.EXECUTION_DURATION_BUCKETS
OPTIMIZATION_DURATION_BUCKETS = names.OPTIMIZATION_DURATION_BUCKETS


def _otel_trace() -> Optional[ModuleType]:
    """opentelemetry.trace if the OpenTelemetry API is installed, else None."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def _number(value: Any) -> Optional[float]:
    """`value` as a finite float, or None (None, NaN, inf, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class _RunMetrics(RunObserver):
    """The metrics of one run, its label children looked up once."""

    def __init__(self, hook: PrometheusHook, ctx: HookContext) -> None:
        m = hook.metrics
        self.hook = hook
        self.metrics = m
        self.function = function = m.function_label(ctx.function or "unknown")
        self.items = m[names.ITEMS_PROCESSED_TOTAL].labels(function)
        self.chunks = m[names.CHUNKS_PROCESSED_TOTAL].labels(function)
        self.chunk_duration = m[names.CHUNK_DURATION_SECONDS].labels(function)
        self.throughput = m[names.THROUGHPUT_ITEMS_PER_SECOND].labels(function)
        self.exemplar = hook.exemplar()
        m[names.EXECUTIONS_IN_PROGRESS].labels(function).inc()
        for status in names.STATUSES:
            m[names.EXECUTIONS_TOTAL].labels(function, status)  # every status from 0
        for counter in (names.PLAN_REVISIONS_TOTAL, names.WORKER_BUSY_SECONDS_TOTAL,
                        names.WORKER_CAPACITY_SECONDS_TOTAL):
            m[counter].labels(function)  # from 0 too: rate() and increase() see the first
        self._plan(ctx)
        seconds = _number(ctx.metadata.get("optimization_seconds"))
        if seconds is not None and seconds >= 0:
            m[names.OPTIMIZATION_DURATION_SECONDS].labels(function).observe(
                seconds, self.exemplar)

    def _plan(self, ctx: HookContext) -> None:
        self.metrics[names.WORKERS].labels(self.function).set(ctx.n_jobs)
        self.metrics[names.CHUNKSIZE].labels(self.function).set(ctx.chunksize)

    def on_chunk_complete(self, ctx: HookContext) -> None:
        exemplar = self.hook.exemplar() or self.exemplar
        self.items.inc(ctx.chunk_size)
        self.chunks.inc()
        self.chunk_duration.observe(max(0.0, ctx.chunk_time), exemplar)
        if ctx.elapsed_time > 0:
            self.throughput.set(ctx.items_completed / ctx.elapsed_time)

    def on_progress(self, ctx: HookContext) -> None:
        self.throughput.set(ctx.throughput_items_per_sec)

    def on_plan_change(self, ctx: HookContext) -> None:
        self.metrics[names.PLAN_REVISIONS_TOTAL].labels(self.function).inc()
        self._plan(ctx)

    def on_error(self, ctx: HookContext) -> None:
        if ctx.status == names.STATUS_CANCELLED:
            return
        error_type = ctx.error_type or "Unknown"
        self.metrics[names.ERRORS_TOTAL].labels(self.function, error_type).inc()

    def on_post_execute(self, ctx: HookContext) -> None:
        m, function = self.metrics, self.function
        status = ctx.status or names.STATUS_SUCCESS
        m[names.EXECUTIONS_TOTAL].labels(function, status).inc()
        exemplar = self.hook.exemplar() or self.exemplar
        m[names.EXECUTION_DURATION_SECONDS].labels(function).observe(
            max(0.0, ctx.elapsed_time), exemplar)
        self.throughput.set(ctx.throughput_items_per_sec)
        busy = _number(ctx.busy_seconds) or 0.0
        capacity = _number(ctx.metadata.get("capacity_seconds")) or 0.0
        m[names.WORKER_BUSY_SECONDS_TOTAL].labels(function).inc(busy)
        m[names.WORKER_CAPACITY_SECONDS_TOTAL].labels(function).inc(capacity)
        if status == names.STATUS_SUCCESS:
            # Set together: the alerts compare figures of one run.
            estimated = _number(ctx.estimated_speedup)
            actual = _number(ctx.actual_speedup)
            efficiency = _number(ctx.parallel_efficiency)
            if estimated is not None:
                m[names.SPEEDUP_ESTIMATED].labels(function).set(estimated)
            if actual is not None:
                m[names.SPEEDUP_ACTUAL].labels(function).set(actual)
            if efficiency is not None:
                m[names.PARALLEL_EFFICIENCY_RATIO].labels(function).set(efficiency)
        m[names.EXECUTIONS_IN_PROGRESS].labels(function).dec()
        if self.hook.pushgateway is not None:
            self.hook.push(function)


class PrometheusHook(Hook):
    """Publish every run to the amorsize metrics of a prometheus_client registry.

    `registry` defaults to prometheus_client's REGISTRY. With `pushgateway=`
    ("host:9091" or a URL) the metrics are pushed after every run with `pushadd`
    (POST), which replaces only the amorsize metric families of the group: grouping
    key `job` plus, by default, `function` (only that function's series are pushed);
    with `grouping_key={...}` that fixed key, with every function's series.
    `push_timeout` is a hard deadline for the whole push: a slow or silent gateway
    costs a run at most that long, then is logged as a warning (the push goes on in
    the background; a new one is skipped while it does). `_created` samples are not
    pushed. `max_functions` caps the distinct `function` label values of the registry
    (later ones count as "other"). Cancelled runs count in executions_total, not in
    errors_total.
    """

    def __init__(self, registry: Optional[CollectorRegistry] = None, *,
                 pushgateway: Optional[str] = None, job: str = "amorsize",
                 grouping_key: Optional[Mapping[str, str]] = None,
                 push_timeout: float = 2.0, exemplars: bool = True,
                 max_functions: int = names.DEFAULT_MAX_FUNCTIONS) -> None:
        client = prometheus_client()
        if registry is None:
            registry = client.REGISTRY
        elif not isinstance(registry, client.CollectorRegistry):
            raise TypeError("registry must be a prometheus_client CollectorRegistry, "
                            f"got {type(registry).__name__}")
        if pushgateway is not None and not isinstance(pushgateway, str):
            raise TypeError("pushgateway must be 'host:port' or a URL string, "
                            f"got {type(pushgateway).__name__}")
        if pushgateway is not None and not pushgateway.strip():
            raise ValueError("pushgateway must not be empty; pass None for no push")
        if not isinstance(job, str) or not job:
            raise ValueError(f"job must be a non-empty string, got {job!r}")
        if isinstance(max_functions, bool) or not isinstance(max_functions, int) or \
                max_functions < 1:
            raise ValueError(f"max_functions must be an int >= 1, got {max_functions!r}")
        self.grouping_key = _validate_grouping_key(grouping_key)
        timeout = _number(push_timeout)
        if timeout is None or timeout <= 0:
            raise ValueError(f"push_timeout must be a number of seconds > 0, "
                             f"got {push_timeout!r}")
        self.registry = registry
        self.pushgateway = pushgateway
        self.job = job
        self.push_timeout = timeout
        self.metrics: MetricSet = metric_set(registry, max_functions)
        self._trace = _otel_trace() if exemplars else None
        self._push_thread: Optional[threading.Thread] = None

    def start_run(self, ctx: HookContext) -> RunObserver:
        """The run's metrics."""
        return _RunMetrics(self, ctx)

    def exemplar(self) -> Optional[dict[str, str]]:
        """{trace_id, span_id} of the current sampled OpenTelemetry span, if any."""
        trace = self._trace
        if trace is None:
            return None
        context = trace.get_current_span().get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return {"trace_id": trace.format_trace_id(context.trace_id),
                "span_id": trace.format_span_id(context.span_id)}

    def push(self, function: Optional[str] = None) -> bool:
        """Push the amorsize metrics to the Pushgateway now, waiting at most
        push_timeout seconds; return whether it was pushed in time.

        With the default grouping key, `function` selects the group (and the series
        pushed); None pushes every function's series under `job` alone.
        """
        if self.pushgateway is None:
            raise ValueError("push() needs PrometheusHook(pushgateway='host:port')")
        previous = self._push_thread
        if previous is not None and previous.is_alive():
            logger.warning("amorsize: the previous push to %s is still running; this one "
                           "is skipped (the next carries the same counts)", self.pushgateway)
            return False
        if self.grouping_key is not None:
            key, view = dict(self.grouping_key), PushView(self.metrics, None)
        elif function is not None:
            key, view = {names.LABEL_FUNCTION: function}, PushView(self.metrics, function)
        else:
            key, view = {}, PushView(self.metrics, None)
        outcome: list[Optional[BaseException]] = []
        thread = threading.Thread(target=self._push_now, args=(key, view, outcome),
                                  name="amorsize-push", daemon=True)
        self._push_thread = thread
        thread.start()
        thread.join(self.push_timeout)
        if thread.is_alive():
            logger.warning("amorsize: the push to the Pushgateway at %s (job %r) did not "
                           "finish within push_timeout=%gs; the run goes on", self.pushgateway,
                           self.job, self.push_timeout)
            return False
        if outcome and outcome[0] is not None:
            logger.warning("amorsize: could not push metrics to the Pushgateway at %s (job "
                           "%r): %s; the run itself is unaffected", self.pushgateway, self.job,
                           outcome[0])
            return False
        return True

    def _push_now(self, key: dict[str, str], view: PushView,
                  outcome: list[Optional[BaseException]]) -> None:
        try:
            prometheus_client().pushadd_to_gateway(
                self.pushgateway, job=self.job, registry=view, grouping_key=key,
                timeout=self.push_timeout)
        except Exception as error:
            outcome.append(error)
        else:
            outcome.append(None)


def _validate_grouping_key(grouping_key: Optional[Mapping[str, str]]) -> Optional[dict[str, str]]:
    """Check a Pushgateway grouping key: label names to string values, no `job`."""
    if grouping_key is None:
        return None
    if not isinstance(grouping_key, Mapping):
        raise TypeError("grouping_key must be a mapping of label names to values, "
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


__all__ = [
    "CHUNK_DURATION_BUCKETS",
    "EXECUTION_DURATION_BUCKETS",
    "INSTALL_HINT",
    "OPTIMIZATION_DURATION_BUCKETS",
    "MetricsServer",
    "PrometheusHook",
    "start_metrics_server",
]
