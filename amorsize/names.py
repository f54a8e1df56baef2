"""Fixed names shared by the library, the dashboard, the alert rules and the tests.

Everything observable about a run is named here once. The Grafana dashboard and the
Prometheus alert rules are checked against this module by the test suite, so a
rename here that is not carried over there fails the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- Prometheus metrics

METRIC_PREFIX = "amorsize_"


@dataclass(frozen=True)
class MetricSpec:
    """One Prometheus metric: its name (without type suffixes), type, labels, help."""

    name: str
    type: str  # "counter", "gauge" or "histogram"
    labels: tuple[str, ...]
    documentation: str


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
HOOK_ERRORS_TOTAL = "amorsize_hook_errors_total"
BUILD_INFO = "amorsize_build_info"

LABEL_FUNCTION = "function"
LABEL_STATUS = "status"
LABEL_ERROR_TYPE = "error_type"
LABEL_EVENT = "event"
LABEL_VERSION = "version"

STATUS_SUCCESS = "success"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"
STATUSES = (STATUS_SUCCESS, STATUS_ERROR, STATUS_CANCELLED)

PROMETHEUS_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(EXECUTIONS_TOTAL, "counter", (LABEL_FUNCTION, LABEL_STATUS),
               "Finished execute() calls, by outcome."),
    MetricSpec(EXECUTION_DURATION_SECONDS, "histogram", (LABEL_FUNCTION,),
               "Wall time of execute(), optimization included."),
    MetricSpec(OPTIMIZATION_DURATION_SECONDS, "histogram", (LABEL_FUNCTION,),
               "Time spent deciding how to run, sampling included."),
    MetricSpec(ITEMS_PROCESSED_TOTAL, "counter", (LABEL_FUNCTION,),
               "Items whose result was returned."),
    MetricSpec(CHUNKS_PROCESSED_TOTAL, "counter", (LABEL_FUNCTION,),
               "Finished tasks (chunks)."),
    MetricSpec(CHUNK_DURATION_SECONDS, "histogram", (LABEL_FUNCTION,),
               "Compute time per task, measured inside the worker."),
    MetricSpec(ERRORS_TOTAL, "counter", (LABEL_FUNCTION, LABEL_ERROR_TYPE),
               "Failures, by exception class name."),
    MetricSpec(EXECUTIONS_IN_PROGRESS, "gauge", (LABEL_FUNCTION,),
               "execute() calls running now."),
    MetricSpec(WORKERS, "gauge", (LABEL_FUNCTION,),
               "n_jobs of the current or last run."),
    MetricSpec(CHUNKSIZE, "gauge", (LABEL_FUNCTION,),
               "Items per task of the current or last run."),
    MetricSpec(THROUGHPUT_ITEMS_PER_SECOND, "gauge", (LABEL_FUNCTION,),
               "Items per second, live during a run and final after it."),
    MetricSpec(SPEEDUP_ESTIMATED, "gauge", (LABEL_FUNCTION,),
               "Speedup over serial that the optimizer predicted."),
    MetricSpec(SPEEDUP_ACTUAL, "gauge", (LABEL_FUNCTION,),
               "Speedup over serial that the run achieved (worker busy time / wall time)."),
    MetricSpec(PARALLEL_EFFICIENCY_RATIO, "gauge", (LABEL_FUNCTION,),
               "Worker busy time / (wall time x n_jobs)."),
    MetricSpec(HOOK_ERRORS_TOTAL, "counter", (LABEL_EVENT,),
               "Hook callbacks that raised, by event."),
    MetricSpec(BUILD_INFO, "gauge", (LABEL_VERSION,),
               "Always 1; the amorsize version as a label."),
    MetricSpec("amorsize_worker_busy_seconds_total", "counter", (LABEL_FUNCTION,),
               "Worker-measured busy seconds of each finished run (added at run end)."),
    MetricSpec("amorsize_worker_capacity_seconds_total", "counter", (LABEL_FUNCTION,),
               "Wall seconds x workers of each finished run (added with busy seconds)."),
    MetricSpec("amorsize_plan_revisions_total", "counter", (LABEL_FUNCTION,),
               "Plan changes during a run (executor, worker count, or task size by 2x)."),
)

# ---------------------------------------------------------------- OpenTelemetry

TRACER_NAME = "amorsize"
METER_NAME = "amorsize"

SPAN_EXECUTE = "amorsize.execute"
SPAN_OPTIMIZE = "amorsize.optimize"
SPAN_CHUNK = "amorsize.chunk"

ATTR_FUNCTION = "amorsize.function"
ATTR_N_JOBS = "amorsize.n_jobs"
ATTR_CHUNKSIZE = "amorsize.chunksize"
ATTR_TOTAL_ITEMS = "amorsize.total_items"
ATTR_EXECUTOR = "amorsize.executor"
ATTR_CHUNK_ID = "amorsize.chunk.id"
ATTR_CHUNK_SIZE = "amorsize.chunk.size"
ATTR_WORKER_ID = "amorsize.worker.id"
ATTR_PROCESS_PID = "process.pid"  # OpenTelemetry semantic convention


# Further span attributes (beyond DESIGN.md's fixed ones) and semantic conventions.
ATTR_EXECUTION_ID = "amorsize.execution.id"
ATTR_STATUS = "amorsize.status"
ATTR_SPEEDUP_ESTIMATED = "amorsize.speedup.estimated"
ATTR_SPEEDUP_ACTUAL = "amorsize.speedup.actual"
ATTR_PARALLEL_EFFICIENCY = "amorsize.parallel_efficiency"
ATTR_ITEMS_COMPLETED = "amorsize.items.completed"
ATTR_CHUNKS_COMPLETED = "amorsize.chunks.completed"
ATTR_WORKER_COUNT = "amorsize.worker.count"
ATTR_CHUNK_SPANS_DROPPED = "amorsize.chunk_spans.dropped"
ATTR_CHUNK_SAMPLED = "amorsize.chunk.sampled"
ATTR_OPTIMIZE_PREFIX = "amorsize.optimize."
ATTR_ERROR_TYPE = "error.type"  # OpenTelemetry semantic convention (metrics)
ATTR_EXCEPTION_STACKTRACE = "exception.stacktrace"  # semantic convention (span events)

# OpenTelemetry metric names; OTEL_METRICS below gives each its kind and unit.
OTEL_METRIC_EXECUTIONS = "amorsize.executions"
OTEL_METRIC_EXECUTION_DURATION = "amorsize.execution.duration"
OTEL_METRIC_OPTIMIZATION_DURATION = "amorsize.optimization.duration"
OTEL_METRIC_ITEMS = "amorsize.items.processed"
OTEL_METRIC_CHUNKS = "amorsize.chunks.processed"
OTEL_METRIC_CHUNK_DURATION = "amorsize.chunk.duration"
OTEL_METRIC_ERRORS = "amorsize.errors"
OTEL_METRIC_IN_PROGRESS = "amorsize.executions.in_progress"


@dataclass(frozen=True)
class OTelMetricSpec:
    """One OpenTelemetry instrument: dotted name, kind, UCUM unit, description."""

    name: str
    kind: str  # "histogram", "counter", "up_down_counter" or "gauge"
    unit: str
    description: str


OTEL_METRICS: tuple[OTelMetricSpec, ...] = (
    OTelMetricSpec(OTEL_METRIC_EXECUTIONS, "counter", "{execution}",
                   "Finished execute() calls, by outcome."),
    OTelMetricSpec(OTEL_METRIC_EXECUTION_DURATION, "histogram", "s",
                   "Wall time of execute(), optimization included."),
    OTelMetricSpec(OTEL_METRIC_OPTIMIZATION_DURATION, "histogram", "s",
                   "Time spent deciding how to run, sampling included."),
    OTelMetricSpec(OTEL_METRIC_ITEMS, "counter", "{item}",
                   "Items whose result was returned."),
    OTelMetricSpec(OTEL_METRIC_CHUNKS, "counter", "{chunk}",
                   "Finished tasks (chunks)."),
    OTelMetricSpec(OTEL_METRIC_CHUNK_DURATION, "histogram", "s",
                   "Compute time per task, measured inside the worker."),
    OTelMetricSpec(OTEL_METRIC_ERRORS, "counter", "{error}",
                   "Failures, by exception class name."),
    OTelMetricSpec(OTEL_METRIC_IN_PROGRESS, "up_down_counter", "{execution}",
                   "execute() calls running now."),
)


def function_label(func: object) -> str:
    """Return the low-cardinality `module:qualname` identity of a callable."""
    target = getattr(func, "func", func)  # functools.partial
    module = getattr(target, "__module__", None) or "unknown"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qualname}"
