"""Runs made of hand-built hook contexts, for the report tests.

The report is fed through `ReportHook.start_run()` and the observer's methods exactly
as the core does, from contexts carrying the typed fields of the event contract, so
these tests do not depend on the core's executor. `simulate_run()` plays a realistic
run: one sampled chunk in the calling process, a process pool of `workers` workers,
a plan revision, and (optionally) one task that fails.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from typing import Any, Optional

T0 = 1_763_712_000.0  # a fixed wall-clock start, so runs are reproducible
CALLER_PID = os.getpid()  # the calling process is this one, as in a real run


@dataclass
class FakeOptimization:
    """The parts of OptimizationResult the report reads."""

    executor_type: str = "process"
    n_jobs: int = 2
    chunksize: int = 20
    estimated_speedup: float = 1.85
    reason: str = "process pool beats serial by 1.85x"
    serial_seconds_estimate: Optional[float] = 3.4  # predicted end: 3.4 / 1.85 = 1.84 s
    predicted_seconds: Optional[float] = 1.84
    optimization_seconds: float = 0.08

    def explain(self) -> str:
        return "\n".join([
            f"decision: {self.executor_type}, n_jobs={self.n_jobs}, chunksize={self.chunksize}",
            f"reason: {self.reason}",
            f"estimated speedup: {self.estimated_speedup:.2f}x",
            "item time: 0.0052 s (cv 0.18)",
            "cpu share: 0.98",
        ])


@dataclass
class FakeContext:
    """A HookContext with the fields of the new event contract (all optional)."""

    event: str
    timestamp: float = T0
    execution_id: str = "3f2a9c"
    function: str = "pipeline.images:resize"
    executor_type: str = "process"
    status: Optional[str] = None
    n_jobs: int = 2
    chunksize: int = 20
    total_items: Optional[int] = None
    estimated_speedup: Optional[float] = None
    first_estimated_speedup: Optional[float] = None
    actual_speedup: Optional[float] = None
    parallel_efficiency: Optional[float] = None
    busy_seconds: Optional[float] = None
    items_completed: int = 0
    items_remaining: Optional[int] = None
    percent_complete: Optional[float] = None
    elapsed_time: float = 0.0
    throughput_items_per_sec: float = 0.0
    run_started_at: Optional[float] = T0
    worker_id: Optional[int] = None
    worker_count: int = 0
    pid: Optional[int] = None
    chunk_id: Optional[int] = None
    chunk_size: int = 0
    chunk_time: float = 0.0
    chunk_started_at: Optional[float] = None
    chunk_ended_at: Optional[float] = None
    chunk_start_index: Optional[int] = None
    sampled: bool = False
    error: Optional[BaseException] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    error_traceback: Optional[str] = None
    results_count: int = 0
    optimization: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


def play(hook: Any, contexts: list[FakeContext]) -> Any:
    """Deliver `contexts` as the core does: PRE_EXECUTE to start_run(), the rest to the
    observer it returned. Returns the observer."""
    observer = None
    for ctx in contexts:
        if ctx.event == "pre_execute":
            observer = hook.start_run(ctx)
        elif observer is not None:
            getattr(observer, ctx.event)(ctx)
    return observer


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "pipeline/images.py", line 41, in resize\n'
    "    raise ValueError(f\"corrupt image {path!r}\")\n"
    "ValueError: corrupt image '<script>window.__xss = 1</script>.png'\n"
)


@dataclass
class SimulatedRun:
    """The contexts of one run, and what a report of it must show."""

    contexts: list[FakeContext]
    completed_chunks: int
    failed_chunk_id: Optional[int]
    sampled_chunk_ids: list[int]
    total_items: int


def simulate_run(
    *,
    workers: int = 2,
    chunks: int = 24,
    fail: bool = True,
    revise: bool = True,
    function: str = "pipeline.images:resize",
    seed: int = 7,
) -> SimulatedRun:
    """A process-pool run: a sampled chunk, `chunks` pool tasks, maybe a failure."""
    rng = random.Random(seed)
    opt = FakeOptimization(n_jobs=workers)
    base = FakeContext(event="", function=function, n_jobs=workers)
    out: list[FakeContext] = []
    sample_size, size = 5, opt.chunksize
    n_tasks = chunks + (2 if revise else 0)
    sizes = [40 if revise and k >= chunks // 2 else size for k in range(n_tasks)]
    total = sample_size + sum(sizes)
    out.append(replace(base, event="pre_execute", timestamp=T0 + 0.08, elapsed_time=0.08,
                       total_items=total, estimated_speedup=opt.estimated_speedup,
                       optimization=opt))
    out.append(replace(base, event="on_chunk_complete", timestamp=T0 + 0.081, chunk_id=0,
                       chunk_size=sample_size, chunk_started_at=T0 + 0.004,
                       chunk_ended_at=T0 + 0.031, chunk_time=0.027, chunk_start_index=0,
                       sampled=True, pid=CALLER_PID, worker_id=None,
                       items_completed=sample_size))
    free = [T0 + 0.16 + 0.01 * w for w in range(workers)]
    for w in range(workers):
        out.append(replace(base, event="on_worker_start", timestamp=free[w], worker_id=w,
                           worker_count=w + 1, pid=CALLER_PID + 1 + w))
    done, next_index, chunk_id = sample_size, sample_size, 1
    failed_id: Optional[int] = None
    completed = 1
    revised = False
    fail_at = chunks - 3 if fail else -1
    for k in range(n_tasks):
        if revise and not revised and k == chunks // 2:
            revised = True
            new = replace(opt, chunksize=40, estimated_speedup=1.62)
            when = min(free)
            out.append(replace(base, event="on_plan_change", timestamp=when,
                               elapsed_time=when - T0, chunksize=40,
                               estimated_speedup=1.62, optimization=new,
                               metadata={"reason": "items take 30 % longer than sampled"}))
        w = min(range(workers), key=lambda i: free[i])
        gap = 0.05 if rng.random() < 0.15 else rng.uniform(0.001, 0.006)
        start = free[w] + gap
        size = sizes[k]
        duration = size * rng.uniform(0.0045, 0.0065)
        end = start + duration
        free[w] = end
        common = dict(timestamp=end + 0.002, chunk_id=chunk_id, chunk_size=size,
                      chunk_started_at=start, chunk_ended_at=end, chunk_time=duration,
                      chunk_start_index=next_index, worker_id=w, worker_count=workers,
                      pid=CALLER_PID + 1 + w, elapsed_time=end + 0.002 - T0)
        if k == fail_at:
            failed_id = chunk_id
            out.append(replace(base, event="on_error", status="error",
                               error=ValueError("corrupt image"), error_type="ValueError",
                               error_message="corrupt image '<script>.png'",
                               error_traceback=TRACEBACK, **common))
            break
        done += size
        completed += 1
        out.append(replace(base, event="on_chunk_complete", items_completed=done,
                           **common))
        next_index += size
        chunk_id += 1
    end_time = max(free) + 0.01
    for w in range(workers):
        out.append(replace(base, event="on_worker_end", timestamp=end_time, worker_id=w,
                           worker_count=workers, pid=CALLER_PID + 1 + w))
    busy = sum(c.chunk_time for c in out if c.chunk_id is not None)
    wall = end_time - T0
    out.append(replace(base, event="on_post_execute", timestamp=end_time, elapsed_time=wall,
                       status="error" if fail else "success", total_items=total,
                       items_completed=done, results_count=0 if fail else done,
                       estimated_speedup=1.62 if revise else opt.estimated_speedup,
                       first_estimated_speedup=opt.estimated_speedup,
                       actual_speedup=busy / wall, parallel_efficiency=busy / wall / workers,
                       busy_seconds=busy, optimization=opt))
    return SimulatedRun(out, completed, failed_id, [0], total)
