"""OpenTelemetry integration: a trace per execute(), a span per chunk, OTel metrics.

`OpenTelemetryHook` turns the hook events into spans and metrics, in the parent
process: workers only measure (see amorsize.worker), so nothing is configured inside
workers and no span is lost when a worker is forked, recycled or killed. The trace of
one execute() is

    amorsize.execute            child of the caller's current span
    ├── amorsize.optimize       sampling and the decision, as attributes
    └── amorsize.chunk  x N     one per task, with the worker's own start/end times

Plan changes are `amorsize.plan.revised` events on the execute span. The hook needs
only the OpenTelemetry API at run time; `configure_tracing()` (amorsize.integrations.
otel_setup) sets up the SDK with an OTLP/HTTP exporter for scripts. Install both with
`pip install "amorsize[otel]"`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from amorsize import names
from amorsize.hooks import Hook, HookContext, RunObserver, hook_error_counts
from amorsize.integrations.otel_setup import (
    INSTALL_HINT,
    configure_tracing,
    missing,
    shutdown_tracing,
    traces_endpoint,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

# Finished chunks are recorded (counters, chunk durations, chunk spans) at most this
# often during a run, and at its end or failure: nothing is lost, each costs less.
FLUSH_SECONDS = 1.0


def _ns(seconds: float) -> int:
    """A time.time() value as the integer nanoseconds OTel expects."""
    return int(seconds * 1e9)


def _attribute(value: Any) -> Any:
    """`value` as an OTel attribute value (numbers stay numbers), or None."""
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


_CHAINING = ("During handling of the above exception, another exception occurred:",
             "The above exception was the direct cause of the following exception:")
_TRACEBACK_HEADS = ("Traceback (most recent call last):",
                    "+ Exception Group Traceback (most recent call last):")
_GROUP_BORDER = re.compile(r"\+[-+]*(?: (?:\d+|\.\.\.) -+)?")
_EXCEPTION_TYPE = re.compile(r"[A-Za-z_][\w.]*")


def without_messages(traceback_text: str) -> str:
    """A formatted traceback with every exception's message cut away, for data that
    must not leave the process: each exception line becomes its type alone, and the
    further lines of multi-line messages and notes are dropped. Frames, source lines,
    chaining and exception-group structure are kept."""
    kept: list[str] = []
    # What an unexplained line is: "exception" (the next one names an exception),
    # "frames" (source lines under a frame, then the exception), "message" (left out).
    state = "exception"
    frame_indent = 0
    for line in traceback_text.splitlines():
        body = line.lstrip(" |")
        indent = len(line) - len(body)
        if not body:
            kept.append(line)
        elif body.startswith(_TRACEBACK_HEADS):
            kept.append(line)
            state, frame_indent = "frames", indent
        elif body in _CHAINING or _GROUP_BORDER.fullmatch(body):
            kept.append(line)
            state = "exception"
        elif state == "frames" and body.startswith('File "'):
            kept.append(line)
            frame_indent = indent
        elif state == "frames" and (indent > frame_indent
                                    or body.startswith("[Previous line repeated")):
            kept.append(line)  # source line, carets
        elif state != "message":
            match = _EXCEPTION_TYPE.match(body)
            if match is not None and body[match.end():match.end() + 1] in ("", ":"):
                kept.append(line[:indent] + match.group())
            state = "message"
    return "\n".join(kept)


def _observe_hook_errors(options: Any) -> list[Any]:
    """amorsize.hook.errors: hooks that raised in this process so far, per event."""
    from opentelemetry.metrics import Observation

    attribute = names.LABEL_ATTRIBUTES[names.LABEL_EVENT]
    return [Observation(count, {attribute: event})
            for event, count in sorted(hook_error_counts().items())]


class _Instruments:
    """The OTel instruments of one meter, made from names.OTEL_METRICS."""

    def __init__(self, meter: Any) -> None:
        self.by_name: dict[str, Any] = {}
        for spec in names.OTEL_METRICS:
            name, unit, text = spec.otel_name, spec.unit, spec.documentation
            kind = spec.otel_instrument
            if spec.name == names.HOOK_ERRORS_TOTAL:
                # One process-wide count, read when the metrics are collected.
                meter.create_observable_counter(name, [_observe_hook_errors], unit, text)
                made = None
            elif kind == "counter":
                made = meter.create_counter(name, unit, text)
            elif kind == "up_down_counter":
                made = meter.create_up_down_counter(name, unit, text)
            elif kind == "gauge":
                create = getattr(meter, "create_gauge", None)  # API 1.27+
                made = create(name, unit, text) if create is not None else None
            else:
                bounds = [b for b in spec.buckets if math.isfinite(b)]
                made = meter.create_histogram(name, unit, text,
                                              explicit_bucket_boundaries_advisory=bounds)
            self.by_name[spec.name] = made

    def record(self, metric: str, value: float, attributes: Mapping[str, Any]) -> None:
        """Add to a counter, record in a histogram, or set a gauge."""
        instrument = self.by_name.get(metric)
        if instrument is None:
            return
        for method in ("add", "record", "set"):
            call = getattr(instrument, method, None)
            if call is not None:
                call(value, attributes)
                return


class _RunTrace(RunObserver):
    """The spans and metrics of one run."""

    def __init__(self, hook: OpenTelemetryHook, ctx: HookContext) -> None:
        self.hook = hook
        self.function = ctx.function or "unknown"
        self.labels = {names.ATTR_FUNCTION: self.function}
        self.tracer = hook.tracer()
        self.instruments = hook.instruments()
        started = ctx.run_started_at or ctx.timestamp
        self.span = self.tracer.start_span(names.SPAN_EXECUTE, start_time=_ns(started))
        _set(self.span, {
            names.ATTR_FUNCTION: self.function, names.ATTR_EXECUTION_ID: ctx.execution_id,
            names.ATTR_N_JOBS: ctx.n_jobs, names.ATTR_CHUNKSIZE: ctx.chunksize,
            names.ATTR_TOTAL_ITEMS: ctx.total_items, names.ATTR_EXECUTOR: ctx.executor_type,
            names.ATTR_SPEEDUP_FIRST_ESTIMATE: ctx.estimated_speedup,
        })
        self.context = hook.trace.set_span_in_context(self.span)
        self.token = hook.context.attach(self.context)
        self.thread = threading.get_ident()
        self.chunk_spans = self.dropped = self.revisions = 0
        self.failed = False
        self.pending: list[HookContext] = []
        self.flushed_at = time.perf_counter()
        self.instruments.record(names.EXECUTIONS_IN_PROGRESS, 1, self.labels)
        seconds = float(ctx.metadata.get("optimization_seconds") or 0.0)
        self.instruments.record(names.OPTIMIZATION_DURATION_SECONDS, seconds, self.labels)
        self.instruments.record(names.WORKERS, ctx.n_jobs, self.labels)
        self.instruments.record(names.CHUNKSIZE, ctx.chunksize, self.labels)
        optimize = self.tracer.start_span(names.SPAN_OPTIMIZE, context=self.context,
                                          start_time=_ns(started))
        if optimize.is_recording():
            _set(optimize, _optimize_attributes(ctx.optimization, self.function))
        optimize.end(end_time=_ns(started + seconds))

    def _chunk_span(self, ctx: HookContext) -> tuple[Span, int]:
        end = ctx.chunk_ended_at or ctx.timestamp
        start = ctx.chunk_started_at or end - ctx.chunk_time
        span = self.tracer.start_span(names.SPAN_CHUNK, context=self.context,
                                      start_time=_ns(start))
        _set(span, {
            names.ATTR_FUNCTION: self.function, names.ATTR_CHUNK_ID: ctx.chunk_id,
            names.ATTR_CHUNK_SIZE: ctx.chunk_size, names.ATTR_WORKER_ID: ctx.worker_id,
            names.ATTR_PROCESS_PID: ctx.pid, names.ATTR_CHUNK_SAMPLED: ctx.sampled or None,
            names.ATTR_CHUNK_START_INDEX: ctx.chunk_start_index,
        })
        return span, _ns(end)

    def on_chunk_complete(self, ctx: HookContext) -> None:
        self.pending.append(ctx)
        if time.perf_counter() - self.flushed_at >= FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        """Record the chunks finished since the last flush. Batched, not per chunk: a
        chunk event arrives with the CPU's caches cold (the parent was waiting), where
        recording one costs several times more than in a loop; spans carry the
        workers' own times, so a span recorded later is the same span."""
        pending, self.pending = self.pending, []
        items = 0
        for ctx in pending:
            self.instruments.record(names.CHUNK_DURATION_SECONDS, ctx.chunk_time, self.labels)
            items += ctx.chunk_size
            if self.chunk_spans >= self.hook.max_chunk_spans:
                self.dropped += 1
                continue
            self.chunk_spans += 1
            span, end = self._chunk_span(ctx)
            span.end(end_time=end)
        if pending:
            self.instruments.record(names.CHUNKS_PROCESSED_TOTAL, len(pending), self.labels)
            self.instruments.record(names.ITEMS_PROCESSED_TOTAL, items, self.labels)
        self.flushed_at = time.perf_counter()

    def on_plan_change(self, ctx: HookContext) -> None:
        self.revisions += 1
        self.instruments.record(names.PLAN_REVISIONS_TOTAL, 1, self.labels)
        self.instruments.record(names.WORKERS, ctx.n_jobs, self.labels)
        self.instruments.record(names.CHUNKSIZE, ctx.chunksize, self.labels)
        if self.span.is_recording():
            event = {names.ATTR_EXECUTOR: ctx.executor_type, names.ATTR_N_JOBS: ctx.n_jobs,
                     names.ATTR_CHUNKSIZE: ctx.chunksize,
                     names.ATTR_SPEEDUP_ESTIMATED: ctx.estimated_speedup,
                     names.ATTR_PLAN_REASON: ctx.metadata.get("reason")}
            self.span.add_event(names.SPAN_EVENT_PLAN_CHANGE,
                                {k: v for k, v in event.items() if _attribute(v) is not None})

    def _record_failure(self, span: Span, ctx: HookContext, set_error: bool) -> None:
        if not span.is_recording():
            return
        messages = self.hook.record_exception_messages
        error_type = ctx.error_type or "Error"
        if ctx.error is not None:
            if messages:
                extra = ({names.ATTR_EXCEPTION_STACKTRACE: ctx.error_traceback}
                         if ctx.error_traceback else None)
                span.record_exception(ctx.error, attributes=extra)
            else:
                event = {"exception.type": error_type}
                if ctx.error_traceback:
                    event[names.ATTR_EXCEPTION_STACKTRACE] = without_messages(
                        ctx.error_traceback)
                span.add_event("exception", event)
        if set_error:
            description = (f"{error_type}: {ctx.error_message}"
                           if messages and ctx.error_message else error_type)
            span.set_status(self.hook.status(self.hook.error_code, description))

    def on_error(self, ctx: HookContext) -> None:
        status = ctx.status or names.STATUS_ERROR
        self._flush()
        if status == names.STATUS_ERROR:
            self.instruments.record(names.ERRORS_TOTAL, 1, {
                **self.labels, names.ATTR_ERROR_TYPE: ctx.error_type or "Error"})
        if ctx.chunk_id is not None:  # a task failed: its span is emitted beyond the cap
            self.chunk_spans += 1
            span, end = self._chunk_span(ctx)
            self._record_failure(span, ctx, set_error=True)
            span.end(end_time=end)
        self.failed = self.failed or status == names.STATUS_ERROR
        self._record_failure(self.span, ctx, set_error=status == names.STATUS_ERROR)

    def on_post_execute(self, ctx: HookContext) -> None:
        status = ctx.status or names.STATUS_SUCCESS
        self._flush()
        record, labels = self.instruments.record, self.labels
        record(names.EXECUTIONS_TOTAL, 1, {**labels, names.ATTR_STATUS: status})
        record(names.EXECUTION_DURATION_SECONDS, ctx.elapsed_time, labels)
        record(names.EXECUTIONS_IN_PROGRESS, -1, labels)
        record(names.THROUGHPUT_ITEMS_PER_SECOND, ctx.throughput_items_per_sec, labels)
        record(names.WORKER_BUSY_SECONDS_TOTAL, ctx.busy_seconds or 0.0, labels)
        record(names.WORKER_CAPACITY_SECONDS_TOTAL,
               float(ctx.metadata.get("capacity_seconds") or 0.0), labels)
        if status == names.STATUS_SUCCESS:
            for metric, value in ((names.SPEEDUP_ESTIMATED, ctx.estimated_speedup),
                                  (names.SPEEDUP_ACTUAL, ctx.actual_speedup),
                                  (names.PARALLEL_EFFICIENCY_RATIO, ctx.parallel_efficiency)):
                if _attribute(value) is not None:
                    record(metric, float(value), labels)  # type: ignore[arg-type]
        span = self.span
        if span.is_recording():
            _set(span, {
                names.ATTR_STATUS: status, names.ATTR_EXECUTOR: ctx.executor_type,
                names.ATTR_N_JOBS: ctx.n_jobs, names.ATTR_CHUNKSIZE: ctx.chunksize,
                names.ATTR_SPEEDUP_ESTIMATED: ctx.estimated_speedup,
                names.ATTR_SPEEDUP_ACTUAL: ctx.actual_speedup,
                names.ATTR_PARALLEL_EFFICIENCY: ctx.parallel_efficiency,
                names.ATTR_ITEMS_COMPLETED: ctx.items_completed,
                names.ATTR_CHUNKS_COMPLETED: ctx.metadata.get("chunks_completed"),
                names.ATTR_WORKER_COUNT: ctx.worker_count,
                names.ATTR_PLAN_REVISIONS: self.revisions or None,
                names.ATTR_CHUNK_SPANS_DROPPED: self.dropped or None,
            })
            if status == names.STATUS_ERROR and not self.failed:
                span.set_status(self.hook.status(self.hook.error_code, "execute() failed"))
        span.end(end_time=_ns(float(ctx.metadata.get("end_time") or time.time())))
        if self.thread == threading.get_ident():
            self.hook.context.detach(self.token)


def _optimize_attributes(result: Any, function: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {names.ATTR_FUNCTION: function}
    if result is None:
        return attributes
    prefix = names.ATTR_OPTIMIZE_PREFIX
    for name in ("executor_type", "n_jobs", "chunksize", "estimated_speedup", "reason",
                 "warnings", "predicted_seconds", "serial_seconds_estimate",
                 "optimization_seconds"):
        key = "executor" if name == "executor_type" else name
        attributes[prefix + key] = getattr(result, name, None)
    figures = getattr(result, "figures", None)
    if figures is not None:
        for name, value in figures.values().items():
            attributes[prefix + name] = value
    return attributes


class OpenTelemetryHook(Hook):
    """Publish each execute() as a trace and as OTel metrics.

    `tracer_provider` / `meter_provider` default to the global providers, looked up
    at the start of every run (so the hook may be built before the SDK is set up).
    At most `max_chunk_spans` chunk spans are emitted per run; the number left out is
    the `amorsize.chunk_spans.dropped` attribute of the execute span (metrics count
    every chunk; a failed chunk's span is always emitted). Exception messages go into
    span statuses and exception events, as OpenTelemetry does by default;
    `record_exception_messages=False` keeps them (and the message lines of worker
    tracebacks) out, for data that must not leave the process.

    While a run is going its execute span is the current span of the thread that
    called execute(), so spans the caller's hooks start become its children and other
    integrations can read its trace id. One hook may serve concurrent runs.
    """

    def __init__(self, tracer_provider: Optional[TracerProvider] = None,
                 meter_provider: Optional[MeterProvider] = None, *,
                 max_chunk_spans: int = 10_000, record_exception_messages: bool = True) -> None:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry.trace import Status, StatusCode
        except ImportError as exc:
            raise missing("OpenTelemetryHook") from exc
        if isinstance(max_chunk_spans, bool) or not isinstance(max_chunk_spans, int) \
                or max_chunk_spans < 0:
            raise ValueError(f"max_chunk_spans must be an int >= 0, got {max_chunk_spans!r}")
        if not isinstance(record_exception_messages, bool):
            raise TypeError("record_exception_messages must be True or False, "
                            f"got {record_exception_messages!r}")
        from amorsize import __version__

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.max_chunk_spans = max_chunk_spans
        self.record_exception_messages = record_exception_messages
        self.version = __version__
        self.context = context
        self.metrics = metrics
        self.trace = trace
        self.status = Status
        self.error_code = StatusCode.ERROR
        self._lock = threading.Lock()
        self._instruments: Optional[tuple[object, _Instruments]] = None

    def start_run(self, ctx: HookContext) -> RunObserver:
        """Start the run's execute span (current in this thread until the run ends)."""
        return _RunTrace(self, ctx)

    def tracer(self) -> Any:
        """The tracer of the configured (or global) provider."""
        return self.trace.get_tracer(names.TRACER_NAME, self.version,
                                     tracer_provider=self.tracer_provider)

    def instruments(self) -> _Instruments:
        """The instruments of the configured (or global) meter provider, made once."""
        provider = self.meter_provider or self.metrics.get_meter_provider()
        with self._lock:
            cached = self._instruments
            if cached is not None and cached[0] is provider:
                return cached[1]
            made = _Instruments(provider.get_meter(names.METER_NAME, self.version))
            self._instruments = (provider, made)
            return made


__all__ = [
    "INSTALL_HINT",
    "OpenTelemetryHook",
    "configure_tracing",
    "shutdown_tracing",
    "traces_endpoint",
    "without_messages",
]
