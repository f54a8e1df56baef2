"""Real Prometheus, Pushgateway and Alertmanager servers for tests, on free loopback ports.

    with start_prometheus(targets=["127.0.0.1:9464"]) as prom:
        prom.wait_for("up", lambda result: bool(result))

Each server runs the Debian binary (`prometheus`, `prometheus-pushgateway`,
`prometheus-alertmanager`) in a temporary directory, listens on 127.0.0.1 only, and is
stopped when the `with` block ends. `WebhookReceiver` is the receiving end of an
Alertmanager webhook. A missing binary fails the test with a clear message; it is
never skipped.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import pytest

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """A test server did not start, or its HTTP API answered with an error."""


def require_binary(name: str) -> str:
    """Return the path of `name`, failing (not skipping) the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH; install the Debian package "
            f"(scripts/test.sh does it when run as root)",
            pytrace=False,
        )
    return path


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, headers: Optional[Mapping[str, str]] = None
             ) -> tuple[int, str]:
    """GET `url`; return (status, body text), also for HTTP error statuses."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


class _Process:
    """A server subprocess with its log file and working directory."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(args), cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server logged."""
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> bool:
        """Poll /-/ready; False when the process exited first (e.g. port taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                status, _ = http_get(self.base_url + "/-/ready", timeout=1.0)
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerError(f"{self.name} on port {self.port} was not ready after {timeout:.0f} s:"
                          f"\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop) and close its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _start(name: str, binary: str, make_args: Callable[[int], list[str]], workdir: Path,
           attempts: int = 3) -> _Process:
    """Start a server on a free port; retry when another process grabbed the port."""
    last = ""
    for _ in range(attempts):
        port = free_port()
        server = _Process(name, [binary, *make_args(port)], workdir, port)
        try:
            ready = server.wait_ready()
        except BaseException:
            server.stop()
            raise
        if ready:
            return server
        last = server.log_tail()
        server.stop()
    raise ServerError(f"{name} exited during startup {attempts} times; last log:\n{last}")


@contextmanager
def _workdir(workdir: Optional[Path], prefix: str) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------- Prometheus


class PrometheusServer:
    """A running Prometheus: its URL and helpers for the HTTP API."""

    def __init__(self, process: _Process, config: dict[str, Any]) -> None:
        self._process = process
        self.port = process.port
        self.url = process.base_url
        self.config = config
        self.workdir = process.workdir

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path> with `params`; return `data`, raising ServerError on error."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        _, body = http_get(url, timeout=10.0)
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise ServerError(f"Prometheus answered {url} with non-JSON: {body[:200]!r}") from error
        if payload.get("status") != "success":
            raise ServerError(f"Prometheus query {url} failed: {payload.get('errorType')}: "
                              f"{payload.get('error')}")
        return payload.get("data")

    def query(self, expr: str, time: Optional[float] = None) -> list[dict[str, Any]]:
        """Instant query; return the result list ({"metric": {...}, "value": [t, "v"]})."""
        data = self.api("query", query=expr, time=time)
        result = data["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def query_value(self, expr: str) -> Optional[float]:
        """Instant query expected to give at most one sample; return its value or None."""
        result = self.query(expr)
        if len(result) > 1:
            raise ServerError(f"{expr!r} returned {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, start: float, end: float, step: str = "1s"
                    ) -> list[dict[str, Any]]:
        """Range query; return the result list ({"metric": {...}, "values": [...]})."""
        return list(self.api("query_range", query=expr, start=start, end=end, step=step)["result"])

    def query_exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """Exemplars of the series `expr` selects in [start, end] (unix seconds).

        Needs `--enable-feature=exemplar-storage` (start_prometheus sets it) and an
        OpenMetrics scrape. Returns [{"seriesLabels": {...}, "exemplars": [{"labels":
        {...}, "value": "...", "timestamp": ...}]}].
        """
        return list(self.api("query_exemplars", query=expr, start=start, end=end) or [])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        return list(self.api("targets")["activeTargets"])

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Query `expr` until `predicate(result)` is true; return that result.

        Raises TimeoutError with the last result and the targets' health.
        """
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        health = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                  for t in self.targets()]
        raise TimeoutError(f"{expr!r} did not satisfy the condition within {timeout:.0f} s; "
                           f"last result {result}; targets {health}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines Prometheus logged."""
        return self._process.log_tail(lines)


def prometheus_config(
    targets: Sequence[str],
    scrape_interval: str = "1s",
    job: str = "amorsize",
    metrics_path: str = "/metrics",
    scheme: str = "http",
    honor_labels: bool = False,
    rule_files: Sequence[str] = (),
    evaluation_interval: Optional[str] = None,
) -> dict[str, Any]:
    """Return a Prometheus config dict scraping `targets` ("host:port") as one job."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "scrape_configs": [{
            "job_name": job,
            "metrics_path": metrics_path,
            "scheme": scheme,
            "honor_labels": honor_labels,
            "static_configs": [{"targets": list(targets)}],
        }],
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    return config


@contextmanager
def start_prometheus(
    targets: Sequence[str] = (),
    scrape_interval: str = "1s",
    *,
    job: str = "amorsize",
    config: Optional[dict[str, Any]] = None,
    extra_args: Sequence[str] = (),
    workdir: Optional[Path] = None,
    **config_options: Any,
) -> Iterator[PrometheusServer]:
    """Run a real Prometheus scraping `targets` every `scrape_interval`; stop it after.

    Listens on 127.0.0.1 on a free port, stores its TSDB in a temporary directory (or
    `workdir`), and has exemplar storage on. `config` replaces the generated config
    whole; otherwise `config_options` go to prometheus_config() (metrics_path,
    scheme, honor_labels, rule_files, evaluation_interval).
    """
    binary = require_binary("prometheus")
    if isinstance(targets, str):
        raise TypeError("targets must be a list of 'host:port' strings, not one string")
    if config is None:
        config = prometheus_config(targets, scrape_interval, job=job, **config_options)
    elif config_options:
        raise TypeError("pass either config= or config options, not both")
    with _workdir(workdir, "amorsize-prometheus-") as directory:
        config_path = directory / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
        (directory / "data").mkdir(exist_ok=True)

        def make_args(port: int) -> list[str]:
            return [
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
                *extra_args,
            ]

        process = _start("prometheus", binary, make_args, directory)
        try:
            yield PrometheusServer(process, config)
        finally:
            process.stop()


# ---------------------------------------------------------------------- Pushgateway


class PushgatewayServer:
    """A running Pushgateway: `address` is what PrometheusHook(pushgateway=...) takes."""

    def __init__(self, process: _Process) -> None:
        self._process = process
        self.port = process.port
        self.url = process.base_url
        self.address = f"{LOOPBACK}:{process.port}"

    def metrics_text(self) -> str:
        """The gateway's own /metrics exposition (all pushed groups)."""
        status, body = http_get(self.url + "/metrics")
        if status != 200:
            raise ServerError(f"Pushgateway /metrics answered {status}: {body[:200]}")
        return body

    def groups(self) -> list[dict[str, Any]]:
        """The pushed groups from /api/v1/metrics, each with its labels and metrics."""
        status, body = http_get(self.url + "/api/v1/metrics")
        if status != 200:
            raise ServerError(f"Pushgateway /api/v1/metrics answered {status}: {body[:200]}")
        return list(json.loads(body).get("data") or [])

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the Pushgateway logged."""
        return self._process.log_tail(lines)


@contextmanager
def start_pushgateway(
    *, extra_args: Sequence[str] = (), workdir: Optional[Path] = None
) -> Iterator[PushgatewayServer]:
    """Run a real Pushgateway on a free 127.0.0.1 port (in-memory); stop it after."""
    binary = require_binary("prometheus-pushgateway")
    with _workdir(workdir, "amorsize-pushgateway-") as directory:

        def make_args(port: int) -> list[str]:
            return [
                f"--web.listen-address={LOOPBACK}:{port}",
                "--persistence.file=",  # in memory; Debian defaults to a file in /var/lib
                "--log.level=warn",
                *extra_args,
            ]

        process = _start("pushgateway", binary, make_args, directory)
        try:
            yield PushgatewayServer(process)
        finally:
            process.stop()


# ---------------------------------------------------------------------- Alertmanager


class AlertmanagerServer:
    """A running Alertmanager: its URL (what Prometheus's `alerting` config targets)."""

    def __init__(self, process: _Process) -> None:
        self._process = process
        self.port = process.port
        self.url = process.base_url
        self.address = f"{LOOPBACK}:{process.port}"

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (GET /api/v2/alerts)."""
        status, body = http_get(self.url + "/api/v2/alerts")
        if status != 200:
            raise ServerError(f"Alertmanager /api/v2/alerts answered {status}: {body[:200]}")
        return list(json.loads(body))

    def log_tail(self, lines: int = 30) -> str:
        """The last lines Alertmanager logged."""
        return self._process.log_tail(lines)


@contextmanager
def start_alertmanager(
    config: dict[str, Any], *, extra_args: Sequence[str] = (), workdir: Optional[Path] = None
) -> Iterator[AlertmanagerServer]:
    """Run a real Alertmanager (Debian's prometheus-alertmanager) with `config`.

    Listens on a free 127.0.0.1 port, clustering off, state in a temporary directory
    (or `workdir`); stopped when the block ends.
    """
    binary = require_binary("prometheus-alertmanager")
    with _workdir(workdir, "amorsize-alertmanager-") as directory:
        config_path = directory / "alertmanager.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
        (directory / "data").mkdir(exist_ok=True)

        def make_args(port: int) -> list[str]:
            return [
                f"--config.file={config_path}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",  # no gossip port on 0.0.0.0
                "--log.level=warn",
                *extra_args,
            ]

        process = _start("alertmanager", binary, make_args, directory)
        try:
            yield AlertmanagerServer(process)
        finally:
            process.stop()


class WebhookReceiver:
    """An HTTP endpoint on 127.0.0.1 that keeps every JSON body POSTed to it.

    What an Alertmanager `webhook_configs` receiver delivers to; use it as a context
    manager, point the receiver at `url`, read `payloads()`.
    """

    def __init__(self, path: str = "/alerts") -> None:
        self.path = path
        self._payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The URL to deliver to."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}{self.path}"

    def payloads(self) -> list[dict[str, Any]]:
        """Every JSON body received so far, oldest first."""
        with self._lock:
            return list(self._payloads)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 describe: Callable[[], str] = lambda: "") -> dict[str, Any]:
        """Return the first received payload for which `predicate` is true (waits)."""
        deadline = time.monotonic() + timeout
        while True:
            for payload in self.payloads():
                if predicate(payload):
                    return payload
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching webhook delivery within {timeout:.0f} s; "
                                   f"received {self.payloads()}\n{describe()}")
            time.sleep(0.1)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver._payloads.append(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep the test output clean

        return Handler

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
