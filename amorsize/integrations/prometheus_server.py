"""A /metrics HTTP server for a registry: prometheus_client's exposition, on loopback.

    server = start_metrics_server(port=9464)   # http://127.0.0.1:9464/metrics
    ...
    server.stop()
"""

from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING, Any, Optional

from amorsize.integrations.prometheus_metrics import prometheus_client

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


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
    client = prometheus_client()
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
