"""A tiny OTLP/HTTP receiver for the tests: decodes what real exporters send.

`OTLPReceiver` listens on a free loopback port, accepts protobuf POSTs on /v1/traces
and /v1/metrics (gzip or deflate bodies too), decodes them with opentelemetry-proto
and keeps the decoded requests. Use it as a context manager.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Optional

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"
METRICS_PATH = "/v1/metrics"


def any_value(value: AnyValue) -> Any:
    """Return the Python value of an OTLP AnyValue (arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """Return OTLP KeyValue pairs as a dict."""
    return {kv.key: any_value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class OTLPReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 that stores the decoded export requests."""

    def __init__(self) -> None:
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []
        self.content_types: list[str] = []
        self.bad_requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, like an OTLP collector's http://host:4318."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OTLPReceiver:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.stop()

    def spans(self) -> list[tuple[dict[str, Any], str, Span]]:
        """Every span received: (resource attributes, scope name, span)."""
        found = []
        with self._lock:
            requests = list(self.trace_requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((resource, scope_spans.scope.name, span))
        return found

    def metrics(self) -> dict[str, Any]:
        """The last received data point set of each metric, by name (Metric messages)."""
        found: dict[str, Any] = {}
        with self._lock:
            requests = list(self.metric_requests)
        for request in requests:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        found[metric.name] = metric
        return found

    def _store(self, path: str, body: bytes, content_type: str) -> Optional[bytes]:
        """Decode one request; return the response body, or None if not understood."""
        with self._lock:
            self.content_types.append(content_type)
            if path == TRACES_PATH:
                trace_request = ExportTraceServiceRequest()
                trace_request.ParseFromString(body)
                self.trace_requests.append(trace_request)
                return bytes(ExportTraceServiceResponse().SerializeToString())
            if path == METRICS_PATH:
                metric_request = ExportMetricsServiceRequest()
                metric_request.ParseFromString(body)
                self.metric_requests.append(metric_request)
                return bytes(ExportMetricsServiceResponse().SerializeToString())
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                try:
                    reply = receiver._store(self.path, body,
                                            self.headers.get("Content-Type") or "")
                except Exception:  # not protobuf: tell the exporter, count it
                    reply = None
                if reply is None:
                    with receiver._lock:
                        receiver.bad_requests += 1
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        return Handler
