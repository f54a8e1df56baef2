"""`amorsize demo`: a realistic mix of jobs in a loop, published to Prometheus and OTLP.

The mix: cheap items (serial is right), heavy pure-Python items (processes), I/O-bound
items (threads), uneven items, and a job that fails now and then. Each job prints one
line: the decision, the wall time and the speedup it achieved. /metrics is served for
Prometheus; traces go to an OTLP endpoint when one is given (argument or the standard
OTEL_EXPORTER_OTLP_* variables). Stops after `duration` seconds, on Ctrl-C or on
SIGTERM (what `docker compose stop` sends: the running job finishes first), closing its
servers and flushing its traces.

The demo is an application, not the library: it turns off prometheus_client's
`_created` series for its own process (the library never touches that global switch).
"""

from __future__ import annotations

import functools
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Optional, TextIO

from amorsize.hooks import Hook, HookCallback, HookContext, HookEvent


class FlakyItemError(RuntimeError):
    """Raised by the demo's flaky job on its unlucky item."""


def cheap_item(x: int) -> int:
    """Far too cheap to be worth another process."""
    return (x * 2654435761) % 4294967296


def heavy_item(x: int) -> float:
    """About 5 ms of pure-Python arithmetic."""
    total = 0.0
    for i in range(1, 25_000):
        total += math.sqrt(i * (x % 97 + 1))
    return total


def io_item(x: int) -> int:
    """Waits 20 ms, like a call to another service."""
    time.sleep(0.02)
    return x


def uneven_item(x: int) -> int:
    """Mostly cheap, one item in ten 50 times dearer."""
    loops = 40_000 if x % 10 == 0 else 800
    total = 0
    for i in range(loops):
        total += i ^ x
    return total


def flaky_item(item: tuple[int, bool]) -> int:
    """Heavy-ish work that raises on the one item marked unlucky."""
    x, unlucky = item
    if unlucky:
        raise FlakyItemError(f"item {x} failed")
    return int(heavy_item(x) / 1000)


@dataclass(frozen=True)
class DemoJob:
    """One job of the mix: a name, a function and a way to make its items."""

    name: str
    func: Callable[[Any], Any]
    make_items: Callable[[random.Random], Iterable[Any]]


DEFAULT_FAILURE_RATE = 0.35


def _flaky_items(rng: random.Random, failure_rate: float = DEFAULT_FAILURE_RATE
                 ) -> list[tuple[int, bool]]:
    """200 items; with probability `failure_rate` one of them (at random) is unlucky."""
    unlucky = rng.randrange(200) if rng.random() < failure_rate else -1
    return [(i, i == unlucky) for i in range(200)]


JOBS: tuple[DemoJob, ...] = (
    DemoJob("cheap", cheap_item, lambda rng: range(rng.randint(200_000, 400_000))),
    DemoJob("heavy", heavy_item, lambda rng: range(rng.randint(150, 250))),
    DemoJob("io", io_item, lambda rng: range(rng.randint(100, 200))),
    DemoJob("uneven", uneven_item, lambda rng: range(rng.randint(1_000, 2_000))),
    DemoJob("flaky", flaky_item, _flaky_items),
)
JOB_NAMES: tuple[str, ...] = tuple(job.name for job in JOBS)


def select_jobs(names: Optional[Sequence[str]] = None,
                failure_rate: float = DEFAULT_FAILURE_RATE) -> tuple[DemoJob, ...]:
    """The jobs named in `names` (all of JOBS if None), in the mix's order.

    `failure_rate` is the probability that one run of the flaky job fails (0 to 1).
    Raises ValueError for an unknown name, an empty selection or a rate outside 0-1.
    """
    if not (isinstance(failure_rate, (int, float)) and 0.0 <= failure_rate <= 1.0):
        raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate!r}")
    wanted = JOB_NAMES if names is None else tuple(names)
    unknown = sorted(set(wanted) - set(JOB_NAMES))
    if unknown:
        raise ValueError(f"unknown demo job(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(JOB_NAMES)}")
    if not wanted:
        raise ValueError("choose at least one demo job")
    flaky = functools.partial(_flaky_items, failure_rate=failure_rate)
    return tuple(replace(job, make_items=flaky) if job.name == "flaky" else job
                 for job in JOBS if job.name in wanted)


class DemoTerminated(KeyboardInterrupt):
    """A second SIGTERM arrived: stop now, the way Ctrl-C does (the run is cancelled)."""


class _StopRequest:
    """Set by the first SIGTERM: the demo finishes the running job, then stops."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def _stop_on_sigterm() -> Iterator[_StopRequest]:
    """Handle SIGTERM in this process while the demo runs; yield the stop request.

    The first SIGTERM asks the demo to stop after the running job (what `docker
    compose stop` expects within its grace period); a second one interrupts that job
    like Ctrl-C. Python as PID 1 in a container ignores SIGTERM, and elsewhere it would
    end the process at once, without flushing spans. Worker processes forked meanwhile
    inherit the handler; in them it restores the default action, so a pool can still
    terminate them. Outside the main thread (where handlers cannot be set) nothing
    changes.
    """
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    demo_pid = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getpid() != demo_pid:  # a forked worker: die as SIGTERM means
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if stop.requested:
            raise DemoTerminated()
        stop.requested = True

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _hooks(metrics_port: Optional[int], metrics_addr: str, otlp_endpoint: Optional[str],
           out: TextIO) -> tuple[list[Any], list[Callable[[], Any]]]:
    """Build the integrations the demo publishes through, and their cleanups."""
    import prometheus_client

    from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server

    # The application's choice, not the library's: no `_created` series (Prometheus
    # before 3.0 stores each as a series of its own).
    prometheus_client.disable_created_metrics()
    hooks: list[Any] = [PrometheusHook()]
    cleanups: list[Callable[[], Any]] = []
    if metrics_port is not None:
        server = start_metrics_server(port=metrics_port, addr=metrics_addr)
        cleanups.append(server.stop)
        print(f"metrics: http://{metrics_addr}:{server.port}/metrics", file=out)
    env_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if otlp_endpoint or env_endpoint:
        from amorsize.integrations.opentelemetry import OpenTelemetryHook, configure_tracing

        provider = configure_tracing(service_name="amorsize-demo", endpoint=otlp_endpoint)
        hooks.insert(0, OpenTelemetryHook(tracer_provider=provider))
        cleanups.append(functools.partial(provider.force_flush, 5_000))
        print(f"traces: OTLP to {otlp_endpoint or env_endpoint}", file=out)
    else:
        print("traces: off (pass --otlp-endpoint or set OTEL_EXPORTER_OTLP_ENDPOINT)", file=out)
    return hooks, cleanups


class _LastOutcome(Hook):
    """Keeps the speedups of the last finished run, from POST_EXECUTE."""

    def __init__(self) -> None:
        self.actual_speedup: Optional[float] = None
        self.first_estimate: Optional[float] = None
        self.final_estimate: Optional[float] = None

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Listen to POST_EXECUTE only."""
        return {HookEvent.POST_EXECUTE: self._on_post}

    def _on_post(self, ctx: HookContext) -> None:
        self.actual_speedup = ctx.actual_speedup
        self.first_estimate = ctx.first_estimated_speedup
        self.final_estimate = ctx.estimated_speedup


def _x(value: Optional[float]) -> str:
    return "  n/a" if value is None or not math.isfinite(value) else f"{value:5.2f}x"


def run_one(job: DemoJob, rng: random.Random, hooks: list[Any], out: TextIO) -> str:
    """Run one job of the mix and print its line; return its status."""
    from amorsize import execute

    items = list(job.make_items(rng))
    outcome = _LastOutcome()
    started = time.perf_counter()
    try:
        results, decision = execute(
            job.func, items, [*hooks, outcome], return_optimization_result=True
        )
    except FlakyItemError as error:
        wall = time.perf_counter() - started
        print(f"{job.name:7s} failed after {wall:.3f} s: {error}", file=out, flush=True)
        return "error"
    wall = time.perf_counter() - started
    plan = decision.revisions[-1] if decision.revisions else decision
    print(
        f"{job.name:7s} {len(results):7d} items  {plan.executor_type:7s} "
        f"n_jobs={plan.n_jobs:<3d} chunksize={plan.chunksize:<7d} "
        f"wall {wall:6.3f} s  speedup {_x(outcome.actual_speedup)} "
        f"(estimated {_x(outcome.first_estimate)} at the start, "
        f"{_x(outcome.final_estimate)} at the end; {len(decision.revisions)} revisions)",
        file=out,
        flush=True,
    )
    return "success"


def run_demo(
    duration: Optional[float] = None,
    metrics_port: Optional[int] = 9464,
    metrics_addr: str = "127.0.0.1",
    otlp_endpoint: Optional[str] = None,
    seed: Optional[int] = None,
    out: Optional[TextIO] = None,
    jobs: Optional[Sequence[str]] = None,
    failure_rate: float = DEFAULT_FAILURE_RATE,
    report: Optional[str] = None,
    trace_json: Optional[str] = None,
) -> int:
    """Run the job mix until `duration` seconds have passed (forever if None), Ctrl-C
    or SIGTERM.

    Ctrl-C cancels the running job; SIGTERM lets it finish first (a second SIGTERM
    cancels it). Either way the metrics server is closed and spans are flushed.
    `jobs`: names of the jobs to run (JOB_NAMES; all if None). `failure_rate`: the
    probability that a run of the flaky job fails. `report` / `trace_json`: an HTML
    report / Chrome trace of the latest job, rewritten after each. Returns the process
    exit code: 0 after a clean stop, also on SIGTERM.
    """
    import sys

    stream = out or sys.stdout
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    mix = select_jobs(jobs, failure_rate)
    rng = random.Random(seed)
    counts = {"success": 0, "error": 0}
    with _stop_on_sigterm() as stop:
        cleanups: list[Callable[[], Any]] = []
        try:
            hooks, cleanups = _hooks(metrics_port, metrics_addr, otlp_endpoint, stream)
            if report is not None or trace_json is not None:
                from amorsize.report import ReportHook

                hooks.append(ReportHook(report, trace_path=trace_json))
            deadline = None if duration is None else time.monotonic() + duration

            def go_on() -> bool:
                return not stop.requested and (deadline is None or time.monotonic() < deadline)

            while go_on():
                for job in mix:
                    if not go_on():
                        break
                    counts[run_one(job, rng, hooks, stream)] += 1
        except DemoTerminated:
            stop.requested = True  # the second SIGTERM: reported as a SIGTERM stop below
        except KeyboardInterrupt:
            print("stopped by Ctrl-C", file=stream)
        finally:
            for cleanup in cleanups:
                cleanup()
        if stop.requested:
            print("stopped by SIGTERM", file=stream)
    print(f"demo finished: {counts['success']} jobs succeeded, {counts['error']} failed",
          file=stream)
    return 0
