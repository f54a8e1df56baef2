"""What hooks cost: HookManager.trigger in microseconds, and execute() with hooks on.

    python -m benchmarks.hooks_overhead [--quick]

1. `HookManager.trigger` (timeit, best of 25 runs of 50,000): an event with no
   callbacks (the context is never built: the publisher skips it), and one no-op
   callback with the context built once per event, as the publisher does.
2. execute() of a fine-grained parallel job (200k items of ~5 us) with a no-op
   callback on every event, against hooks=None. Interleaved, median overhead. Two
   ways: as amorsize decides it (its own n_jobs and chunksize: a few large chunks),
   and a stress case forced to a process pool with 250 items per task (~800 chunk
   events, far finer than amorsize would choose).
3. The same with the Prometheus and OpenTelemetry integrations both on (SDK providers
   with in-memory export), where those integrations are installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from typing import Any, Optional

from amorsize import execute, system
from amorsize.hooks import Hook, HookContext, HookEvent, HookManager
from benchmarks.workloads import fine

ITEMS = 200_000
CHUNKSIZE = 250


def _noop(ctx: HookContext) -> None:
    """A callback that does nothing."""


class _ChunkCounter:
    """A callback that only counts the tasks (the plan is revised while running, so the
    first decision's chunksize no longer tells how many there were)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, ctx: HookContext) -> None:
        self.count += 1


def trigger_costs() -> dict[str, float]:
    """Microseconds per HookManager.trigger, no callbacks and one no-op callback."""
    empty = HookManager()
    one = HookManager()
    one.register(HookEvent.ON_CHUNK_COMPLETE, _noop)
    ctx = HookContext(event=HookEvent.ON_CHUNK_COMPLETE)
    number = 50_000

    names = {"empty": empty, "one": one, "ctx": ctx}

    def best(statement: Any) -> float:
        # The best of many short runs: the shared machine has quiet moments, and the
        # fastest run is the one least disturbed.
        times = timeit.repeat(statement, number=number, repeat=25, globals=names)
        return min(times) / number * 1e6

    def built_and_triggered() -> None:
        one.trigger(HookContext(event=HookEvent.ON_CHUNK_COMPLETE, n_jobs=2, chunksize=250,
                                total_items=ITEMS, elapsed_time=1.0, chunk_id=3,
                                chunk_size=250, chunk_time=0.01, worker_id=1,
                                metadata={"pid": 1}))

    return {
        "no_callbacks_us": best("empty.trigger(ctx)"),
        "one_noop_us": best("one.trigger(ctx)"),
        "one_noop_with_context_us": best(built_and_triggered),
    }


def integrations() -> Optional[list[Hook]]:
    """The Prometheus and OpenTelemetry hooks with private providers, or None."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from prometheus_client import CollectorRegistry

        from amorsize.integrations.opentelemetry import OpenTelemetryHook
        from amorsize.integrations.prometheus import PrometheusHook
    except ImportError:
        return None
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return [PrometheusHook(CollectorRegistry()),
            OpenTelemetryHook(tracer_provider=tracer_provider, meter_provider=meter_provider)]


def execute_overhead(items: int, repeats: int, forced: bool) -> dict[str, Any]:
    """Median wall time of execute() per hook setting, interleaved.

    `forced`: a process pool with CHUNKSIZE items per task instead of amorsize's own
    decision.
    """
    noop = HookManager()
    counter = _ChunkCounter()
    for event in HookEvent:
        noop.register(event, counter if event is HookEvent.ON_CHUNK_COMPLETE else _noop)
    settings: dict[str, Any] = {"none": None, "noop": noop}
    hooks = integrations()
    if hooks is not None:
        settings["integrations"] = hooks
    data = range(items)
    n_jobs = system.usable_cores()
    options: dict[str, Any] = (
        {"executor_type": "process", "n_jobs": n_jobs, "chunksize": CHUNKSIZE} if forced else {}
    )
    times: dict[str, list[float]] = {name: [] for name in settings}
    cpu: dict[str, list[float]] = {name: [] for name in settings}
    names = list(settings)
    chunks = []
    _, decision = execute(fine, data, return_optimization_result=True, **options)  # warm-up
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            counted = counter.count
            t0 = time.perf_counter()
            c0 = time.process_time()
            _, decision = execute(fine, data, settings[name], return_optimization_result=True,
                                  **options)
            cpu[name].append(time.process_time() - c0)
            times[name].append(time.perf_counter() - t0)
            if name == "noop":
                chunks.append(counter.count - counted)
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "items": items,
        "forced": forced,
        "chunks": statistics.median(chunks),
        "n_jobs": decision.n_jobs,
        "executor_type": decision.executor_type,
        "repeats": repeats,
        "seconds": medians,
        "overhead": {name: medians[name] / medians["none"] - 1 for name in names if name != "none"},
        "parent_cpu": cpu_medians,
        # Hooks run in the parent: their cost is the parent's extra CPU time, which is
        # far less noisy on a shared machine than the difference of two wall times.
        "cpu_overhead": {name: (cpu_medians[name] - cpu_medians["none"]) / medians["none"]
                         for name in names if name != "none"},
    }


def measure(quick: bool = False) -> dict[str, Any]:
    """Everything this benchmark measures."""
    return {
        "trigger": trigger_costs(),
        "execute": execute_overhead(ITEMS, 3 if quick else 9, forced=True),
        "execute_decided": execute_overhead(ITEMS, 3 if quick else 9, forced=False),
    }


def render(result: dict[str, Any]) -> str:
    """The hook overhead section of docs/benchmarks.md."""
    trig = result["trigger"]
    lines = [
        "## Hook overhead (`python -m benchmarks.hooks_overhead`)",
        "",
        "| HookManager.trigger | us per event | target |",
        "|---|---|---|",
        f"| no callbacks | {trig['no_callbacks_us']:.3f} | < 0.2 |",
        f"| one no-op callback (context prebuilt) | {trig['one_noop_us']:.3f} | |",
        f"| one no-op callback, context built per event | "
        f"{trig['one_noop_with_context_us']:.3f} | < 2 |",
    ]
    for key in ("execute_decided", "execute"):
        if key in result:
            lines += ["", *_execute_table(result[key])]
    lines += [
        "",
        "Hooks run in the parent, so their cost is the parent's extra CPU time; the "
        "'extra parent CPU' column puts it against the run's wall time. The wall-time "
        "difference is the same cost plus the machine's noise (it is shared: a few % "
        "either way).",
    ]
    return "\n".join(lines)


def _execute_table(ex: dict[str, Any]) -> list[str]:
    how = (f"forced to {ex['n_jobs']} worker processes, {CHUNKSIZE} items per task"
           if ex.get("forced", True) else
           f"as amorsize decides it ({ex.get('executor_type', 'process')}, "
           f"n_jobs={ex['n_jobs']})")
    lines = [
        f"execute() of {ex['items']:,} items of ~5 us, {how}: {ex['chunks']:.0f} chunks, "
        f"median of {ex['repeats']} interleaved runs:",
        "",
        "| hooks | median wall time (s) | wall overhead vs hooks=None "
        "| parent CPU (s) | extra parent CPU / wall time | target |",
        "|---|---|---|---|---|---|",
        f"| None | {ex['seconds']['none']:.3f} | | {ex['parent_cpu']['none']:.3f} | | |",
    ]
    rows = [("noop", "no-op callback on every event", "<= 1%"),
            ("integrations", "PrometheusHook + OpenTelemetryHook", "<= 2%")]
    for key, label, target in rows:
        if key not in ex["seconds"]:
            lines.append(f"| {label} | not installed | | | | |")
            continue
        lines.append(
            f"| {label} | {ex['seconds'][key]:.3f} | {100 * ex['overhead'][key]:+.2f}% "
            f"| {ex['parent_cpu'][key]:.3f} | {100 * ex['cpu_overhead'][key]:+.2f}% "
            f"| {target} |"
        )
    return lines


def main() -> None:
    """Measure and print the hook overhead section."""
    parser = argparse.ArgumentParser(description="amorsize hook overhead")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    result = measure(quick=args.quick)
    print(json.dumps(result) if args.json else render(result))


if __name__ == "__main__":
    main()
