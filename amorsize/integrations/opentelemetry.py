"""OpenTelemetry integration: a trace per execute(), a span per chunk, OTel metrics.

`OpenTelemetryHook` turns the hook events into spans and metrics, in the parent
process: workers only measure (see amorsize.worker), so nothing is configured inside
workers and no span is lost when a worker is forked, recycled or killed. The trace of
one execute() is

    amorsize.execute            child of the caller's current span
    ├── amorsize.optimize       sampling and the decision, as attributes
    └── amorsize.chunk  x N     one per task, with the worker's own start/end times

The hook needs only the OpenTelemetry API at run time. `configure_tracing()` is a
convenience for scripts that sets up the SDK with an OTLP/HTTP exporter (Jaeger,
an OpenTelemetry Collector). Install both with `pip install "amorsize[otel]"`.
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from amorsize.hooks import Hook, HookCallback, HookContext, HookEvent
from amorsize.names import (
    ATTR_CHUNK_ID,
    ATTR_CHUNK_SAMPLED,
    ATTR_CHUNK_SIZE,
    ATTR_CHUNK_SPANS_DROPPED,
    ATTR_CHUNKS_COMPLETED,
    ATTR_CHUNKSIZE,
    ATTR_ERROR_TYPE,
    ATTR_EXCEPTION_STACKTRACE,
    ATTR_EXECUTION_ID,
    ATTR_EXECUTOR,
    ATTR_FUNCTION,
    ATTR_ITEMS_COMPLETED,
    ATTR_N_JOBS,
    ATTR_OPTIMIZE_PREFIX,
    ATTR_PARALLEL_EFFICIENCY,
    ATTR_PROCESS_PID,
    ATTR_SPEEDUP_ACTUAL,
    ATTR_SPEEDUP_ESTIMATED,
    ATTR_STATUS,
    ATTR_TOTAL_ITEMS,
    ATTR_WORKER_COUNT,
    ATTR_WORKER_ID,
    METER_NAME,
    OTEL_METRIC_CHUNK_DURATION,
    OTEL_METRIC_CHUNKS,
    OTEL_METRIC_ERRORS,
    OTEL_METRIC_EXECUTION_DURATION,
    OTEL_METRIC_EXECUTIONS,
    OTEL_METRIC_IN_PROGRESS,
    OTEL_METRIC_ITEMS,
    OTEL_METRIC_OPTIMIZATION_DURATION,
    OTEL_METRICS,
    SPAN_CHUNK,
    SPAN_EXECUTE,
    SPAN_OPTIMIZE,
    STATUS_ERROR,
    STATUS_SUCCESS,
    TRACER_NAME,
)

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import Counter, Histogram, MeterProvider, UpDownCounter
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "amorsize[otel]"'

# Bucket advice for the second-valued histograms (the API default suits milliseconds).
EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                     300.0, 600.0, 1800.0)
# Finished chunks are recorded (counters, chunk durations, chunk spans) at most this
# often during a run, and at its end or failure: nothing is lost, each costs less.
FLUSH_SECONDS = 1.0
CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0, 60.0)


def _missing(what: str) -> ImportError:
    return ImportError(f"{what} needs OpenTelemetry, which is not installed: {INSTALL_HINT}")


def _ns(seconds: float) -> int:
    """Convert a time.time() value to the integer nanoseconds OTel expects."""
    return int(seconds * 1e9)


def _attribute(value: Any) -> Any:
    """Return `value` as an OTel attribute value (numbers stay numbers), or None."""
    if value is None:
        return None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    return str(value)


def _set(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set the attributes that have a value, if the span is recording."""
    if not span.is_recording():
        return
    clean = {}
    for key, raw in attributes.items():
        value = _attribute(raw)
        if value is not None:
            clean[key] = value
    span.set_attributes(clean)


@functools.lru_cache(maxsize=256)
def figure_attribute(name: str) -> str:
    """Map an OptimizationResult figure name to an attribute key:
    "mean item time (s)" -> "amorsize.optimize.mean_item_time_s"."""
    words = name.lower().replace("/", " per ").replace("+", " and ")
    return ATTR_OPTIMIZE_PREFIX + re.sub(r"[^a-z0-9]+", "_", words).strip("_")


class _Instruments:
    """The OTel instruments of one meter, created from amorsize.names.OTEL_METRICS."""

    def __init__(self, meter: Any) -> None:
        made: dict[str, Any] = {}
        for spec in OTEL_METRICS:
            if spec.kind == "counter":
                made[spec.name] = meter.create_counter(spec.name, spec.unit, spec.description)
            elif spec.kind == "up_down_counter":
                made[spec.name] = meter.create_up_down_counter(
                    spec.name, spec.unit, spec.description
                )
            elif spec.kind == "histogram":
                buckets = (EXECUTION_BUCKETS if spec.name != OTEL_METRIC_CHUNK_DURATION
                           else CHUNK_BUCKETS)
                try:
                    made[spec.name] = meter.create_histogram(
                        spec.name, spec.unit, spec.description,
                        explicit_bucket_boundaries_advisory=list(buckets),
                    )
                except TypeError:  # API older than 1.23: no bucket advice
                    made[spec.name] = meter.create_histogram(spec.name, spec.unit,
                                                             spec.description)
        self.executions: Counter = made[OTEL_METRIC_EXECUTIONS]
        self.execution_duration: Histogram = made[OTEL_METRIC_EXECUTION_DURATION]
        self.optimization_duration: Histogram = made[OTEL_METRIC_OPTIMIZATION_DURATION]
        self.items: Counter = made[OTEL_METRIC_ITEMS]
        self.chunks: Counter = made[OTEL_METRIC_CHUNKS]
        self.chunk_duration: Histogram = made[OTEL_METRIC_CHUNK_DURATION]
        self.errors: Counter = made[OTEL_METRIC_ERRORS]
        self.in_progress: UpDownCounter = made[OTEL_METRIC_IN_PROGRESS]


@dataclass
class _Run:
    """What the hook keeps about one execute() between PRE_EXECUTE and POST_EXECUTE."""

    span: Span
    context: Context
    tracer: Tracer
    instruments: _Instruments
    labels: dict[str, str]
    token: Token[Context]
    thread: int
    chunk_spans: int = 0
    dropped: int = 0
    failed: bool = False
    pending_chunks: int = 0  # counted, not yet added to the counters
    pending_items: int = 0
    # Finished chunks whose duration and span are not recorded yet (see flush).
    pending: list[HookContext] = field(default_factory=list)
    flushed_at: float = 0.0


class OpenTelemetryHook(Hook):
    """Publish each execute() as a trace and as OTel metrics.

    `tracer_provider` / `meter_provider` default to the global providers, looked up
    at the start of every run (so the hook may be built before the SDK is set up).
    At most `max_chunk_spans` chunk spans are emitted per run; the number left out is
    the `amorsize.chunk_spans.dropped` attribute of the execute span (metrics still
    count every chunk; a failed chunk's span is always emitted).

    While a run is going, its execute span is the current span of the thread that
    called execute(), so spans the caller's hooks start become its children and
    other integrations can read its trace id. One hook may serve concurrent runs.
    """

    def __init__(
        self,
        tracer_provider: Optional[TracerProvider] = None,
        meter_provider: Optional[MeterProvider] = None,
        *,
        max_chunk_spans: int = 10_000,
    ) -> None:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry.trace import Status, StatusCode
        except ImportError as exc:
            raise _missing("OpenTelemetryHook") from exc
        if isinstance(max_chunk_spans, bool) or not isinstance(max_chunk_spans, int) \
                or max_chunk_spans < 0:
            raise ValueError(f"max_chunk_spans must be an int >= 0, got {max_chunk_spans!r}")
        from amorsize import __version__

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.max_chunk_spans = max_chunk_spans
        self._version = __version__
        self._context = context
        self._metrics = metrics
        self._trace = trace
        self._status = Status
        self._error_code = StatusCode.ERROR
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._instruments: Optional[tuple[object, _Instruments]] = None

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Subscribe to the run's start, chunks, errors and end."""
        return {
            HookEvent.PRE_EXECUTE: self._on_pre_execute,
            HookEvent.ON_CHUNK_COMPLETE: self._on_chunk_complete,
            HookEvent.ON_ERROR: self._on_error,
            HookEvent.POST_EXECUTE: self._on_post_execute,
        }

    # ------------------------------------------------------------------ providers

    def _tracer(self) -> Tracer:
        return self._trace.get_tracer(TRACER_NAME, self._version,
                                      tracer_provider=self.tracer_provider)

    def _meter_instruments(self) -> _Instruments:
        provider = self.meter_provider or self._metrics.get_meter_provider()
        with self._lock:
            cached = self._instruments
            if cached is not None and cached[0] is provider:
                return cached[1]
            instruments = _Instruments(provider.get_meter(METER_NAME, self._version))
            self._instruments = (provider, instruments)
            return instruments

    # ------------------------------------------------------------------ events

    def _on_pre_execute(self, ctx: HookContext) -> None:
        meta = ctx.metadata
        function = str(meta.get("function", "unknown"))
        started = float(meta.get("start_time") or ctx.timestamp)
        tracer = self._tracer()
        instruments = self._meter_instruments()
        span = tracer.start_span(SPAN_EXECUTE, start_time=_ns(started))
        _set(span, {
            ATTR_FUNCTION: function,
            ATTR_EXECUTION_ID: meta.get("execution_id"),
            ATTR_N_JOBS: ctx.n_jobs,
            ATTR_CHUNKSIZE: ctx.chunksize,
            ATTR_TOTAL_ITEMS: ctx.total_items,
            ATTR_EXECUTOR: meta.get("executor_type"),
            ATTR_SPEEDUP_ESTIMATED: meta.get("estimated_speedup"),
        })
        span_context = self._trace.set_span_in_context(span)
        labels = {ATTR_FUNCTION: function}
        run = _Run(span=span, context=span_context, tracer=tracer, instruments=instruments,
                   labels=labels, token=self._context.attach(span_context),
                   thread=threading.get_ident(), flushed_at=time.perf_counter())
        with self._lock:
            self._runs[str(meta.get("execution_id"))] = run
        instruments.in_progress.add(1, labels)
        optimization_seconds = float(meta.get("optimization_seconds") or 0.0)
        instruments.optimization_duration.record(optimization_seconds, labels)
        optimize = tracer.start_span(SPAN_OPTIMIZE, context=span_context,
                                     start_time=_ns(started))
        if optimize.is_recording():
            _set(optimize, self._optimize_attributes(meta.get("optimization"), function))
        optimize.end(end_time=_ns(started + optimization_seconds))

    @staticmethod
    def _optimize_attributes(result: Any, function: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {ATTR_FUNCTION: function}
        if result is None:
            return attributes
        for name in ("executor_type", "n_jobs", "chunksize", "estimated_speedup", "reason",
                     "warnings", "predicted_seconds", "serial_seconds_estimate",
                     "optimization_seconds"):
            key = "executor" if name == "executor_type" else name
            attributes[ATTR_OPTIMIZE_PREFIX + key] = getattr(result, name, None)
        for name, value in (getattr(result, "figures", None) or {}).items():
            attributes[figure_attribute(str(name))] = value
        return attributes

    def _run(self, ctx: HookContext) -> Optional[_Run]:
        return self._runs.get(str(ctx.metadata.get("execution_id")))

    def _chunk_span(self, run: _Run, ctx: HookContext) -> tuple[Span, int]:
        """Start the span of the chunk `ctx` reports; return it and its end time (ns)."""
        meta = ctx.metadata
        end = float(meta.get("end_time") or ctx.timestamp)
        start = float(meta.get("start_time") or end - ctx.chunk_time)
        span = run.tracer.start_span(SPAN_CHUNK, context=run.context, start_time=_ns(start))
        _set(span, {
            ATTR_FUNCTION: run.labels[ATTR_FUNCTION],
            ATTR_CHUNK_ID: ctx.chunk_id,
            ATTR_CHUNK_SIZE: ctx.chunk_size,
            ATTR_WORKER_ID: ctx.worker_id,
            ATTR_PROCESS_PID: meta.get("pid"),
            ATTR_CHUNK_SAMPLED: meta.get("sampled") or None,
        })
        return span, _ns(end)

    def _on_chunk_complete(self, ctx: HookContext) -> None:
        run = self._run(ctx)
        if run is None:
            return
        run.pending.append(ctx)
        if time.perf_counter() - run.flushed_at >= FLUSH_SECONDS:
            self._flush(run)

    def _flush(self, run: _Run) -> None:
        """Record the chunks finished since the last flush: counters, durations, spans.

        Batched rather than per chunk: one chunk event arrives with the CPU's caches
        cold (the parent was waiting for workers), where recording it costs several
        times more than in a loop. Spans carry the workers' own times, so a span
        recorded later is the same span.
        """
        pending, run.pending = run.pending, []
        instruments = run.instruments
        for ctx in pending:
            instruments.chunk_duration.record(ctx.chunk_time, run.labels)
            run.pending_chunks += 1
            run.pending_items += ctx.chunk_size
            if run.chunk_spans >= self.max_chunk_spans:
                run.dropped += 1
                continue
            run.chunk_spans += 1
            span, end = self._chunk_span(run, ctx)
            span.end(end_time=end)
        if run.pending_chunks:
            instruments.chunks.add(run.pending_chunks, run.labels)
            instruments.items.add(run.pending_items, run.labels)
            run.pending_chunks = run.pending_items = 0
        run.flushed_at = time.perf_counter()

    def _record_failure(self, span: Span, ctx: HookContext, description: str,
                        set_error: bool) -> None:
        if not span.is_recording():
            return
        if ctx.error is not None:
            extra = ({ATTR_EXCEPTION_STACKTRACE: ctx.error_traceback}
                     if ctx.error_traceback else None)
            span.record_exception(ctx.error, attributes=extra)
        if set_error:
            span.set_status(self._status(self._error_code, description))

    def _on_error(self, ctx: HookContext) -> None:
        run = self._run(ctx)
        if run is None:
            return
        meta = ctx.metadata
        status = meta.get("status", STATUS_ERROR)
        error_type = str(meta.get("error_type") or type(ctx.error).__name__)
        description = f"{error_type}: {ctx.error_message}" if ctx.error_message else error_type
        self._flush(run)
        if status == STATUS_ERROR:
            run.instruments.errors.add(1, {**run.labels, ATTR_ERROR_TYPE: error_type})
        if ctx.chunk_id is not None:  # a task failed: its span is emitted beyond the cap
            run.chunk_spans += 1
            span, end = self._chunk_span(run, ctx)
            self._record_failure(span, ctx, description, set_error=True)
            span.end(end_time=end)
        run.failed = run.failed or status == STATUS_ERROR
        self._record_failure(run.span, ctx, description, set_error=status == STATUS_ERROR)

    def _on_post_execute(self, ctx: HookContext) -> None:
        with self._lock:
            run = self._runs.pop(str(ctx.metadata.get("execution_id")), None)
        if run is None:
            return
        meta = ctx.metadata
        status = str(meta.get("status", STATUS_SUCCESS))
        self._flush(run)
        instruments = run.instruments
        instruments.executions.add(1, {**run.labels, ATTR_STATUS: status})
        instruments.execution_duration.record(ctx.elapsed_time, run.labels)
        instruments.in_progress.add(-1, run.labels)
        span = run.span
        if span.is_recording():
            _set(span, {
                ATTR_STATUS: status,
                ATTR_SPEEDUP_ACTUAL: meta.get("actual_speedup"),
                ATTR_PARALLEL_EFFICIENCY: meta.get("parallel_efficiency"),
                ATTR_ITEMS_COMPLETED: ctx.items_completed,
                ATTR_CHUNKS_COMPLETED: meta.get("chunks_completed"),
                ATTR_WORKER_COUNT: meta.get("worker_count"),
                ATTR_CHUNK_SPANS_DROPPED: run.dropped or None,
            })
            if status == STATUS_ERROR and not run.failed:
                span.set_status(self._status(self._error_code, "execute() failed"))
        span.end(end_time=_ns(float(meta.get("end_time") or time.time())))
        if run.thread == threading.get_ident():
            self._context.detach(run.token)


# ---------------------------------------------------------------------- SDK set-up

DEFAULT_SERVICE_NAME = "amorsize"
# Spans the batch processor may hold before dropping (SDK default 2048): room for a
# burst of chunk spans from a fast job while the exporter catches up.
MAX_QUEUED_SPANS = 16_384
TRACES_PATH = "/v1/traces"


def traces_endpoint(endpoint: str) -> str:
    """Return the OTLP/HTTP traces URL for a collector base URL (http://host:4318)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def configure_tracing(
    service_name: Optional[str] = None,
    endpoint: Optional[str] = None,
    *,
    export_timeout: float = 5.0,
    shutdown_timeout: float = 5.0,
    set_global: bool = True,
) -> SDKTracerProvider:
    """Set up the OpenTelemetry SDK to send spans over OTLP/HTTP; return the provider.

    `service_name` defaults to $OTEL_SERVICE_NAME, else "amorsize". `endpoint` is the
    collector's base URL (http://jaeger:4318; "/v1/traces" is appended); without it
    the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT
    variables apply (default http://localhost:4318). Spans go through a
    BatchSpanProcessor (queue of 16 384 spans unless $OTEL_BSP_MAX_QUEUE_SIZE is set):
    the job never waits for the collector; an export attempt gives up after
    `export_timeout` seconds and is logged. At exit the remaining spans are flushed
    for at most `shutdown_timeout` seconds (`shutdown_tracing` does it earlier). With
    `set_global` the provider becomes the global one (a no-op, logged, if one is
    already set); pass set_global=False and give the provider to OpenTelemetryHook
    to keep the global state untouched.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise _missing("configure_tracing") from exc
    for name, value in (("export_timeout", export_timeout),
                        ("shutdown_timeout", shutdown_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    service = service_name or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = SDKProvider(resource=Resource.create({SERVICE_NAME: service}),
                           shutdown_on_exit=False)
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(endpoint) if endpoint else None,
                                timeout=export_timeout)
    queue = None if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else MAX_QUEUED_SPANS
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=queue, export_timeout_millis=export_timeout * 1000
    ))
    if set_global:
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            logger.warning("a global tracer provider was already set; configure_tracing() "
                           "returns its provider without making it global")
    atexit.register(shutdown_tracing, provider, shutdown_timeout)
    return provider


def shutdown_tracing(provider: SDKTracerProvider, timeout: float = 5.0) -> bool:
    """Flush and shut `provider` down, waiting at most `timeout` seconds; return
    whether it finished in time (if not, the rest is given up, in the background)."""
    worker = threading.Thread(target=provider.shutdown, name="amorsize-otel-shutdown",
                              daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no new threads at interpreter shutdown (newer Pythons)
        provider.shutdown()
        return True
    worker.join(timeout)
    if worker.is_alive():
        logger.warning("amorsize: spans not exported within %.1f s at shutdown; "
                       "giving up on them", timeout)
        return False
    return True
