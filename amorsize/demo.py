"""`amorsize demo`: a realistic mix of jobs in a loop, published to Prometheus and OTLP.

The mix: cheap items (serial is right), heavy pure-Python items (processes), I/O-bound
items (threads), uneven items, and a job that fails now and then. Each job prints one
line: the decision, the wall time and the speedup it achieved. /metrics is served for
Prometheus; traces go to an OTLP endpoint when one is given (argument or the standard
OTEL_EXPORTER_OTLP_* variables). Stops after `duration` seconds or on Ctrl-C.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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


def _flaky_items(rng: random.Random) -> list[tuple[int, bool]]:
    unlucky = rng.randrange(200) if rng.random() < 0.35 else -1
    return [(i, i == unlucky) for i in range(200)]


JOBS: tuple[DemoJob, ...] = (
    DemoJob("cheap", cheap_item, lambda rng: range(rng.randint(200_000, 400_000))),
    DemoJob("heavy", heavy_item, lambda rng: range(rng.randint(150, 250))),
    DemoJob("io", io_item, lambda rng: range(rng.randint(100, 200))),
    DemoJob("uneven", uneven_item, lambda rng: range(rng.randint(1_000, 2_000))),
    DemoJob("flaky", flaky_item, _flaky_items),
)


def _hooks(metrics_port: Optional[int], metrics_addr: str, otlp_endpoint: Optional[str],
           out: TextIO) -> tuple[list[Any], list[Callable[[], None]]]:
    """Build the integrations the demo publishes through, and their cleanups."""
    from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server

    hooks: list[Any] = [PrometheusHook()]
    cleanups: list[Callable[[], None]] = []
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
) -> int:
    """Run the job mix until `duration` seconds have passed (forever if None) or Ctrl-C.

    Returns the process exit code: 0 after a clean stop.
    """
    import sys

    stream = out or sys.stdout
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    rng = random.Random(seed)
    hooks, cleanups = _hooks(metrics_port, metrics_addr, otlp_endpoint, stream)
    deadline = None if duration is None else time.monotonic() + duration
    counts = {"success": 0, "error": 0}
    try:
        while deadline is None or time.monotonic() < deadline:
            for job in JOBS:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                counts[run_one(job, rng, hooks, stream)] += 1
    except KeyboardInterrupt:
        print("stopped by Ctrl-C", file=stream)
    finally:
        for cleanup in cleanups:
            cleanup()
    print(f"demo finished: {counts['success']} jobs succeeded, {counts['error']} failed",
          file=stream)
    return 0
