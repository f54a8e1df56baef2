"""Fixed names shared by the library, the dashboard, the alert rules and the tests.

Everything observable about a run is named here once. Each metric has one
`MetricSpec`: its Prometheus name, its OpenTelemetry name and unit, its buckets and
labels, its help text. Both exporters are generated from these specs, and the
Grafana dashboard and the Prometheus rules are checked against them by the tests, so
a rename here that is not carried over there fails the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

METRIC_PREFIX = "amorsize_"

LABEL_FUNCTION = "function"
LABEL_STATUS = "status"
LABEL_ERROR_TYPE = "error_type"
LABEL_EVENT = "event"
LABEL_VERSION = "version"

STATUS_SUCCESS = "success"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"
STATUSES = (STATUS_SUCCESS, STATUS_ERROR, STATUS_CANCELLED)

# Distinct `function` label values one registry keeps before new functions are counted
# under OTHER_FUNCTION (a program that makes functions on the fly must not grow the
# number of series without bound).
DEFAULT_MAX_FUNCTIONS = 1000
OTHER_FUNCTION = "other"

# ---------------------------------------------------------------- OpenTelemetry names

TRACER_NAME = "amorsize"
METER_NAME = "amorsize"

SPAN_EXECUTE = "amorsize.execute"
SPAN_OPTIMIZE = "amorsize.optimize"
SPAN_CHUNK = "amorsize.chunk"
SPAN_EVENT_PLAN_CHANGE = "amorsize.plan.revised"

ATTR_FUNCTION = "amorsize.function"
ATTR_N_JOBS = "amorsize.n_jobs"
ATTR_CHUNKSIZE = "amorsize.chunksize"
ATTR_TOTAL_ITEMS = "amorsize.total_items"
ATTR_EXECUTOR = "amorsize.executor"
ATTR_CHUNK_ID = "amorsize.chunk.id"
ATTR_CHUNK_SIZE = "amorsize.chunk.size"
ATTR_CHUNK_START_INDEX = "amorsize.chunk.start_index"
ATTR_WORKER_ID = "amorsize.worker.id"
ATTR_PROCESS_PID = "process.pid"  # OpenTelemetry semantic convention
ATTR_EXECUTION_ID = "amorsize.execution.id"
ATTR_STATUS = "amorsize.status"
ATTR_SPEEDUP_ESTIMATED = "amorsize.speedup.estimated"
ATTR_SPEEDUP_FIRST_ESTIMATE = "amorsize.speedup.first_estimate"
ATTR_SPEEDUP_ACTUAL = "amorsize.speedup.actual"
ATTR_PARALLEL_EFFICIENCY = "amorsize.parallel_efficiency"
ATTR_ITEMS_COMPLETED = "amorsize.items.completed"
ATTR_CHUNKS_COMPLETED = "amorsize.chunks.completed"
ATTR_WORKER_COUNT = "amorsize.worker.count"
ATTR_PLAN_REVISIONS = "amorsize.plan.revisions"
ATTR_PLAN_REASON = "amorsize.plan.reason"
ATTR_CHUNK_SPANS_DROPPED = "amorsize.chunk_spans.dropped"
ATTR_CHUNK_SAMPLED = "amorsize.chunk.sampled"
ATTR_OPTIMIZE_PREFIX = "amorsize.optimize."
ATTR_EVENT = "amorsize.event"
ATTR_ERROR_TYPE = "error.type"  # OpenTelemetry semantic convention
ATTR_EXCEPTION_STACKTRACE = "exception.stacktrace"  # semantic convention (span events)

# The OpenTelemetry attribute carrying each Prometheus label.
LABEL_ATTRIBUTES = {
    LABEL_FUNCTION: ATTR_FUNCTION,
    LABEL_STATUS: ATTR_STATUS,
    LABEL_ERROR_TYPE: ATTR_ERROR_TYPE,
    LABEL_EVENT: ATTR_EVENT,
}

# ---------------------------------------------------------------- buckets

# Chunks of half a millisecond up to ten minutes.
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

# ---------------------------------------------------------------- the metric specs


@dataclass(frozen=True)
class MetricSpec:
    """One metric, as both exporters publish it.

    `name` is the Prometheus name (counters end in `_total`); `otel_name` the dotted
    OpenTelemetry name, None where it has no OpenTelemetry twin; `unit` is UCUM.
    """

    name: str
    type: str  # "counter", "gauge" or "histogram"
    labels: tuple[str, ...]
    documentation: str
    otel_name: Optional[str] = None
    unit: str = "1"
    buckets: tuple[float, ...] = ()
    otel_kind: Optional[str] = None  # where it differs from `type` ("up_down_counter")

    @property
    def otel_instrument(self) -> str:
        """The OpenTelemetry instrument kind: counter, up_down_counter, gauge, histogram."""
        return self.otel_kind or self.type

    @property
    def otel_attributes(self) -> tuple[str, ...]:
        """The OpenTelemetry attribute keys standing for the Prometheus labels."""
        return tuple(LABEL_ATTRIBUTES[label] for label in self.labels)


EXECUTIONS_TOTAL = "amorsize_executions_total"
EXECUTION_DURATION_SECONDS = "amorsize_execution_duration_seconds"
OPTIMIZATION_DURATION_SECONDS = "amorsize_optimization_duration_seconds"
ITEMS_PROCESSED_TOTAL = "amorsize_items_processed_total"
CHUNKS_PROCESSED_TOTAL = "amorsize_chunks_processed_total"
CHUNK_DURATION_SECONDS = "amorsize_chunk_duration_seconds"
ERRORS_TOTAL = "amorsize_errors_total"
EXECUTIONS_IN_PROGRESS = "amorsize_executions_in_progress"
WORKERS = "amorsize_workers"
CHUNKSIZE = "amorsize_chunksize"
THROUGHPUT_ITEMS_PER_SECOND = "amorsize_throughput_items_per_second"
SPEEDUP_ESTIMATED = "amorsize_speedup_estimated"
SPEEDUP_ACTUAL = "amorsize_speedup_actual"
PARALLEL_EFFICIENCY_RATIO = "amorsize_parallel_efficiency_ratio"
WORKER_BUSY_SECONDS_TOTAL = "amorsize_worker_busy_seconds_total"
WORKER_CAPACITY_SECONDS_TOTAL = "amorsize_worker_capacity_seconds_total"
PLAN_REVISIONS_TOTAL = "amorsize_plan_revisions_total"
HOOK_ERRORS_TOTAL = "amorsize_hook_errors_total"
BUILD_INFO = "amorsize_build_info"

_F = (LABEL_FUNCTION,)

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(EXECUTIONS_TOTAL, "counter", (LABEL_FUNCTION, LABEL_STATUS),
               "Finished execute() calls, by outcome.",
               "amorsize.executions", "{execution}"),
    MetricSpec(EXECUTION_DURATION_SECONDS, "histogram", _F,
               "Wall time of execute(), optimization included.",
               "amorsize.execution.duration", "s", EXECUTION_DURATION_BUCKETS),
    MetricSpec(OPTIMIZATION_DURATION_SECONDS, "histogram", _F,
               "Time spent deciding how to run, sampling included.",
               "amorsize.optimization.duration", "s", OPTIMIZATION_DURATION_BUCKETS),
    MetricSpec(ITEMS_PROCESSED_TOTAL, "counter", _F,
               "Items whose result was returned.",
               "amorsize.items.processed", "{item}"),
    MetricSpec(CHUNKS_PROCESSED_TOTAL, "counter", _F,
               "Finished tasks (chunks).",
               "amorsize.chunks.processed", "{chunk}"),
    MetricSpec(CHUNK_DURATION_SECONDS, "histogram", _F,
               "Compute time per task, measured inside the worker.",
               "amorsize.chunk.duration", "s", CHUNK_DURATION_BUCKETS),
    MetricSpec(ERRORS_TOTAL, "counter", (LABEL_FUNCTION, LABEL_ERROR_TYPE),
               "Failures, by exception class name.",
               "amorsize.errors", "{error}"),
    MetricSpec(EXECUTIONS_IN_PROGRESS, "gauge", _F,
               "execute() calls running now.",
               "amorsize.executions.in_progress", "{execution}",
               otel_kind="up_down_counter"),
    MetricSpec(WORKERS, "gauge", _F,
               "Workers of the current or last run (updated when the plan changes).",
               "amorsize.workers", "{worker}"),
    MetricSpec(CHUNKSIZE, "gauge", _F,
               "Planned items per task of the current or last run.",
               "amorsize.chunksize", "{item}"),
    MetricSpec(THROUGHPUT_ITEMS_PER_SECOND, "gauge", _F,
               "Items per second, live during a run and final after it.",
               "amorsize.throughput", "{item}/s"),
    MetricSpec(SPEEDUP_ESTIMATED, "gauge", _F,
               "Final estimated speedup over serial of the last successful run "
               "(set with the actual speedup).",
               "amorsize.speedup.estimated", "1"),
    MetricSpec(SPEEDUP_ACTUAL, "gauge", _F,
               "Speedup over serial that the last successful run achieved "
               "(worker busy time / wall time).",
               "amorsize.speedup.actual", "1"),
    MetricSpec(PARALLEL_EFFICIENCY_RATIO, "gauge", _F,
               "Worker busy time / (wall time x workers) of the last successful run.",
               "amorsize.parallel_efficiency", "1"),
    MetricSpec(WORKER_BUSY_SECONDS_TOTAL, "counter", _F,
               "Worker-measured busy seconds of finished runs.",
               "amorsize.worker.busy_time", "s"),
    MetricSpec(WORKER_CAPACITY_SECONDS_TOTAL, "counter", _F,
               "Wall seconds x workers of finished runs (added with the busy seconds).",
               "amorsize.worker.capacity_time", "s"),
    MetricSpec(PLAN_REVISIONS_TOTAL, "counter", _F,
               "Plan changes while running: executor, workers, or task size by 2x or more.",
               "amorsize.plan.revisions", "{revision}"),
    MetricSpec(HOOK_ERRORS_TOTAL, "counter", (LABEL_EVENT,),
               "Hook callbacks that raised, by event (the whole process).",
               "amorsize.hook.errors", "{error}"),
    MetricSpec(BUILD_INFO, "gauge", (LABEL_VERSION,),
               "Always 1; the amorsize version as a label."),
)

# The Prometheus view and the OpenTelemetry view of the same specs.
PROMETHEUS_METRICS: tuple[MetricSpec, ...] = METRICS
OTEL_METRICS: tuple[MetricSpec, ...] = tuple(m for m in METRICS if m.otel_name is not None)
METRICS_BY_NAME = {spec.name: spec for spec in METRICS}


def function_label(func: object) -> str:
    """Return the low-cardinality `module:qualname` identity of a callable."""
    target = getattr(func, "func", func)  # functools.partial
    module = getattr(target, "__module__", None) or "unknown"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qualname}"
