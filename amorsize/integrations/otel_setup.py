"""Setting up the OpenTelemetry SDK for scripts: OTLP/HTTP traces to a collector.

`configure_tracing()` is a convenience for programs that have no OpenTelemetry set-up
of their own. An unreachable collector is reported once: the exporter's retry and
failure messages after the first are kept off the console (they would interleave with
a progress bar), and counted at shutdown.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "amorsize[otel]"'
# The loggers the OTLP exporter and the batch processor report failed exports on.
EXPORT_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                  "opentelemetry.sdk._shared_internal")


def missing(what: str) -> ImportError:
    """The error for a missing OpenTelemetry install, naming the extra."""
    return ImportError(f"{what} needs OpenTelemetry, which is not installed: {INSTALL_HINT}")


class OnceFilter(logging.Filter):
    """Lets the first warning or error of the export loggers through, counts the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = False
        self.suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        with self._lock:
            if not self.shown:
                self.shown = True
                record.msg = f"{record.msg} (amorsize: further export errors are not shown)"
                return True
            self.suppressed += 1
            return False


_once = OnceFilter()


def quiet_export_errors() -> OnceFilter:
    """Show the first export failure only (idempotent); return the filter."""
    for name in EXPORT_LOGGERS:
        target = logging.getLogger(name)
        if _once not in target.filters:
            target.addFilter(_once)
    return _once



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
        raise missing("configure_tracing") from exc
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
    quiet_export_errors()
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
    if _once.suppressed:
        logger.warning("amorsize: %d further span export errors were not shown",
                       _once.suppressed)
        _once.suppressed = 0
    if worker.is_alive():
        logger.warning("amorsize: spans not exported within %.1f s at shutdown; "
                       "giving up on them", timeout)
        return False
    return True
