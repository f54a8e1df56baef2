"""Programs written for the original Amorsize API run unchanged (issue 14).

What its users and its own hook suites rely on: `verbose=` on execute() and optimize(),
POST_EXECUTE as a finished job's progress, the metadata keys of PRE/POST_EXECUTE,
`trigger(event, ctx)`, one worker event per pool worker, and `get_stats()` counts.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Optional

import pytest

from amorsize import (
    ExecutionCancelled,
    HookContext,
    HookEvent,
    HookManager,
    OptimizationResult,
    create_error_hook,
    create_progress_hook,
    create_timing_hook,
    execute,
    execute_iter,
    optimize,
    system,
)
from amorsize.hooks import RunHooks
from amorsize.publisher import RunIdentity, RunPublisher
from amorsize.worker import ChunkReport
from tests.workloads import Boom, raise_on_13, spin, square, tag

PARENT = os.getpid()


class Recorder:
    """A callback that keeps the contexts it is called with."""

    def __init__(self) -> None:
        self.seen: list[HookContext] = []

    def __call__(self, ctx: HookContext) -> None:
        self.seen.append(ctx)

    def of(self, event: HookEvent) -> list[HookContext]:
        return [c for c in self.seen if c.event is event]


def recording(*events: HookEvent) -> tuple[HookManager, Recorder]:
    """A manager with one recorder registered on `events` (all of them if none given)."""
    manager, recorder = HookManager(), Recorder()
    for event in events or tuple(HookEvent):
        manager.register(event, recorder)
    return manager, recorder


def make_data(kind: str, n: int) -> Iterable[int]:
    """`n` items as a list, or as a generator (total unknown until the end)."""
    return list(range(n)) if kind == "list" else (x for x in range(n))


def meet_then_spin(x: int, folder: str, caller: int) -> int:
    """Pure CPU work; in a worker process, first wait (busy, up to 60 s) until two
    worker processes have each started an item, so that a 2-worker pool uses both.

    The wait spins instead of sleeping: the workers measure a function that computes."""
    if os.getpid() != caller:
        Path(folder, str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
            pass
    return spin(x, 60_000)


# ------------------------------------------------------------------ verbose=


def test_verbose_false_is_accepted_and_prints_nothing(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    manager = HookManager(verbose=False)
    results, decision = execute(square, range(10), hooks=manager, verbose=False,
                                return_optimization_result=True)
    assert results == [x * x for x in range(10)]
    assert isinstance(decision, OptimizationResult)
    assert isinstance(optimize(square, range(10), verbose=False), OptimizationResult)
    assert capsys.readouterr().out == ""


def test_verbose_execute_prints_the_decision_then_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager = HookManager()
    explained: list[str] = []
    manager.register(HookEvent.PRE_EXECUTE, lambda c: explained.append(c.optimization.explain()))
    assert execute(square, range(20), manager, verbose=True) == [x * x for x in range(20)]
    out = capsys.readouterr().out
    assert len(explained) == 1
    assert out.startswith(f"amorsize: tests.workloads:square\n{explained[0]}\n")
    assert out.splitlines()[-1].startswith("amorsize: success: 20 items in ")


def test_verbose_execute_prints_the_error_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(Boom):
        execute(raise_on_13, range(30), executor_type="serial", verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "amorsize: tests.workloads:raise_on_13"
    assert any(line.startswith("amorsize: error: Boom: item 13 is unlucky") for line in lines)
    assert lines[-1].startswith("amorsize: error: ")
    assert " items in " in lines[-1] and "speedup" in lines[-1]


def test_verbose_optimize_prints_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    result = optimize(square, range(100), verbose=True)
    assert capsys.readouterr().out == result.explain() + "\n"


def test_verbose_does_not_change_the_callers_manager(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager, recorder = recording(HookEvent.POST_EXECUTE)
    execute(square, range(10), manager, verbose=True)
    assert capsys.readouterr().out
    assert manager.hook_objects() == ()
    counts = manager.get_stats()["hook_counts"]
    assert counts == {e.value: int(e is HookEvent.POST_EXECUTE) for e in HookEvent}
    execute(square, range(10), manager)
    assert capsys.readouterr().out == ""  # the printer belonged to the verbose run only
    assert len(recorder.seen) == 2


# ------------------------------------------------------------------ POST_EXECUTE


RUNS: dict[str, dict[str, Any]] = {
    "serial": {"executor_type": "serial"},
    "thread": {"executor_type": "thread", "n_jobs": 2},
    "process": {"executor_type": "process", "n_jobs": 2},
    "automatic": {},
}


@pytest.mark.parametrize("kind", ["list", "generator"])
@pytest.mark.parametrize("run", list(RUNS))
def test_post_execute_on_success_is_a_finished_job(run: str, kind: str,
                                                   no_leftover_children: None) -> None:
    manager, recorder = recording(HookEvent.PRE_EXECUTE, HookEvent.POST_EXECUTE)
    results = execute(square, make_data(kind, 40), manager, **RUNS[run])
    assert results == [x * x for x in range(40)]
    [pre] = recorder.of(HookEvent.PRE_EXECUTE)
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    assert post.status == "success"
    assert post.items_completed == post.total_items == post.results_count == 40
    assert post.items_remaining == 0
    assert post.percent_complete == 100.0
    assert post.estimated_time_remaining == 0.0
    # Every figure with a value once the job is done is filled in.
    assert post.elapsed_time > 0
    assert post.throughput_items_per_sec > 0
    assert post.avg_item_time is not None and post.avg_item_time > 0
    assert post.busy_seconds is not None and post.busy_seconds > 0
    assert post.actual_speedup is not None and post.actual_speedup > 0
    assert post.parallel_efficiency is not None and post.parallel_efficiency > 0
    assert post.worker_count >= 1 and post.n_jobs >= 1
    assert post.optimization is not None
    assert post.pid == PARENT
    assert post.execution_id == pre.execution_id and post.execution_id
    assert post.function == "tests.workloads:square"


@pytest.mark.parametrize("run", list(RUNS))
def test_pre_and_post_execute_metadata_name_the_executor_and_the_estimate(
    run: str, no_leftover_children: None,
) -> None:
    manager, recorder = recording(HookEvent.PRE_EXECUTE, HookEvent.POST_EXECUTE)
    execute(square, range(30), manager, **RUNS[run])
    [pre] = recorder.of(HookEvent.PRE_EXECUTE)
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    for ctx in (pre, post):
        assert ctx.metadata["executor_type"] == ctx.executor_type
        assert ctx.executor_type in ("serial", "thread", "process")
        estimate = ctx.metadata["estimated_speedup"]
        assert isinstance(estimate, float)
        assert estimate == ctx.estimated_speedup or (
            math.isnan(estimate) and ctx.estimated_speedup is not None
            and math.isnan(ctx.estimated_speedup))
    if run != "automatic":
        assert pre.executor_type == RUNS[run]["executor_type"]


@pytest.mark.parametrize("kind", ["list", "generator"])
def test_progress_hook_on_post_execute_reports_100_percent(kind: str) -> None:
    calls: list[tuple[float, int, Optional[int]]] = []
    manager = HookManager()
    manager.register(HookEvent.POST_EXECUTE,
                     create_progress_hook(lambda *call: calls.append(call)))
    execute(square, make_data(kind, 50), manager)
    assert calls == [(100.0, 50, 50)]


def test_throttled_progress_hook_still_reports_the_end() -> None:
    """Registered on ON_PROGRESS and POST_EXECUTE with the default 1 s throttle, the
    last call is the finished job however soon it follows the first."""
    calls: list[tuple[float, int, Optional[int]]] = []
    hook = create_progress_hook(lambda *call: calls.append(call))
    manager = HookManager()
    manager.register(HookEvent.ON_PROGRESS, hook)
    manager.register(HookEvent.POST_EXECUTE, hook)
    execute(square, range(50), manager, executor_type="thread", n_jobs=2, chunksize=5,
            progress_interval=0)
    assert calls[0][1] < 50  # the first progress event, let through
    assert calls[-2:] == [(100.0, 50, 50), (100.0, 50, 50)]  # final ON_PROGRESS, POST


def test_progress_hook_on_post_execute_of_a_failed_job_is_below_100() -> None:
    calls: list[tuple[float, int, Optional[int]]] = []
    manager = HookManager()
    manager.register(HookEvent.POST_EXECUTE,
                     create_progress_hook(lambda *call: calls.append(call), min_interval=0.0))
    with pytest.raises(Boom):
        execute(raise_on_13, range(30), manager, executor_type="serial")
    [(percent, completed, total)] = calls
    assert total == 30 and completed < 13  # items 0-12 at most: item 13 raised
    assert percent == pytest.approx(100.0 * completed / 30)


def test_timing_hook_on_post_execute_gets_the_runs_elapsed_time() -> None:
    timings: list[tuple[str, float]] = []
    manager, recorder = recording(HookEvent.POST_EXECUTE)
    manager.register(HookEvent.POST_EXECUTE,
                     create_timing_hook(lambda name, elapsed: timings.append((name, elapsed))))
    execute(square, range(50), manager)
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    assert timings == [("post_execute", post.elapsed_time)]
    assert post.elapsed_time > 0


def test_error_hook_gets_the_traceback_as_text() -> None:
    calls: list[tuple[BaseException, str]] = []
    manager = HookManager()
    manager.register(HookEvent.ON_ERROR, create_error_hook(lambda *call: calls.append(call)))
    with pytest.raises(Boom):
        execute(raise_on_13, range(30), manager, executor_type="thread", n_jobs=2)
    [(error, text)] = calls
    assert isinstance(error, Boom)
    assert "Traceback" in text and "item 13 is unlucky" in text


def test_error_hook_of_a_cancelled_run_gets_empty_text() -> None:
    """A cancel has no traceback; the original API always passed a string."""
    calls: list[tuple[BaseException, str]] = []
    manager = HookManager()
    manager.register(HookEvent.ON_ERROR, create_error_hook(lambda *call: calls.append(call)))
    stream = execute_iter(square, range(1000), manager, executor_type="serial", chunksize=10)
    assert next(stream) == 0
    stream.close()  # type: ignore[attr-defined]
    [(error, text)] = calls
    assert isinstance(error, ExecutionCancelled)
    assert text == ""


# ------------------------------------------------------------------ trigger(event, ctx)


def test_trigger_takes_the_event_then_the_context() -> None:
    manager, recorder = recording(HookEvent.ON_PROGRESS, HookEvent.POST_EXECUTE)
    ctx = HookContext(event=HookEvent.POST_EXECUTE, n_jobs=3, metadata={"k": 1})
    manager.trigger(HookEvent.ON_PROGRESS, ctx)  # the event given wins over ctx.event
    assert [(c.event, c.n_jobs) for c in recorder.seen] == [(HookEvent.ON_PROGRESS, 3)]
    [seen] = recorder.seen
    assert (seen.timestamp, seen.metadata) == (ctx.timestamp, {"k": 1})
    assert ctx.event is HookEvent.POST_EXECUTE  # the caller's context is left as it was
    manager.trigger(HookEvent.POST_EXECUTE, ctx)  # same event: the context itself
    assert recorder.seen[-1] is ctx
    del recorder.seen[-1]
    manager.trigger(HookContext(event=HookEvent.POST_EXECUTE, n_jobs=5))
    assert [(c.event, c.n_jobs) for c in recorder.seen[1:]] == [(HookEvent.POST_EXECUTE, 5)]
    calls = manager.get_stats()["call_counts"]
    assert (calls["on_progress"], calls["post_execute"]) == (1, 2)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("on_progress",), TypeError, "First parameter must be HookEvent or HookContext"),
        ((7,), TypeError, "First parameter must be HookEvent or HookContext"),
        ((None,), TypeError, "First parameter must be HookEvent or HookContext"),
        ((HookContext(event=HookEvent.ON_PROGRESS), HookContext(event=HookEvent.ON_ERROR)),
         ValueError, "context parameter must be None"),
        ((HookEvent.ON_PROGRESS,), ValueError, "context parameter must be provided"),
        ((HookEvent.ON_PROGRESS, None), ValueError, "context parameter must be provided"),
    ],
    ids=["string", "int", "none", "two-contexts", "event-alone", "event-and-none"],
)
def test_trigger_rejects_a_call_it_cannot_read(args: tuple[Any, ...], error: type[Exception],
                                               message: str) -> None:
    manager, recorder = recording()
    trigger: Callable[..., None] = manager.trigger
    with pytest.raises(error, match=message):
        trigger(*args)
    assert recorder.seen == []
    assert set(manager.get_stats()["call_counts"].values()) == {0}


# ------------------------------------------------------------------ worker events


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fixed", [False, True], ids=["automatic", "fixed"])
def test_a_two_worker_process_run_reports_two_workers(fixed: bool, tmp_path: Path,
                                                      no_leftover_children: None) -> None:
    """The calling process is not a worker of a pool run, also when it ran the dry run."""
    func = functools.partial(meet_then_spin, folder=str(tmp_path), caller=PARENT)
    options: dict[str, Any] = {"executor_type": "process"} if fixed else {}
    manager, recorder = recording()
    results, decision = execute(func, range(200), manager, n_jobs=2,
                                return_optimization_result=True, **options)
    assert results == [spin(x, 60_000) for x in range(200)]
    if not fixed and system.usable_cores() < 2 and decision.executor_type != "process":
        pytest.skip("on one core, two threads are as right as two processes")
    assert decision.executor_type == "process"
    assert all(c.executor_type == "process" for c in recorder.seen)

    starts = recorder.of(HookEvent.ON_WORKER_START)
    ends = recorder.of(HookEvent.ON_WORKER_END)
    assert len(starts) == 2 and len(ends) == 2
    assert sorted(c.worker_id or 0 for c in starts) == [0, 1]
    assert sorted(c.worker_id or 0 for c in ends) == [0, 1]
    pids = {c.pid for c in starts}
    assert len(pids) == 2 and PARENT not in pids
    assert max(c.worker_count for c in starts) == 2
    assert {c.worker_count for c in ends} == {2}
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    assert post.worker_count == 2

    chunks = recorder.of(HookEvent.ON_CHUNK_COMPLETE)
    sampled = [c for c in chunks if c.sampled]
    assert all(c.worker_id is None and c.pid == PARENT for c in sampled)
    assert all(c.worker_id in (0, 1) and c.pid in pids for c in chunks if not c.sampled)
    if fixed:
        assert sampled == []  # nothing ran in the calling process
    else:
        assert len(sampled) == 1  # the dry run: a chunk of the run, of no worker
    assert sum(c.chunk_size for c in chunks) == 200


@pytest.mark.parametrize("options", [{"executor_type": "serial"}, {"n_jobs": 1},
                                     {"min_speedup": 1e9}],
                         ids=["serial", "n_jobs=1", "automatic"])
def test_in_a_serial_run_the_calling_process_is_worker_0(options: dict[str, Any]) -> None:
    manager, recorder = recording()
    results, decision = execute(tag, range(30), manager, return_optimization_result=True,
                                **options)
    assert results == [(x, PARENT) for x in range(30)]
    assert decision.executor_type == "serial"
    for event in (HookEvent.ON_WORKER_START, HookEvent.ON_WORKER_END):
        [worker] = recorder.of(event)
        assert (worker.worker_id, worker.worker_count, worker.pid) == (0, 1, PARENT)
    chunks = recorder.of(HookEvent.ON_CHUNK_COMPLETE)
    assert chunks and all(c.worker_id == 0 and not c.sampled for c in chunks)
    assert sum(c.chunk_size for c in chunks) == 30  # the dry run's items included
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    assert post.worker_count == 1


def report(chunk_id: int, pid: int, done: int, *, sampled: bool = False) -> ChunkReport:
    """A task's report as a worker (or the dry run, `sampled`) would send it."""
    now = time.time()
    return ChunkReport(chunk_id=chunk_id, item_count=done, done=done, results=[None] * done,
                       wall_start=now, wall_end=now, duration=0.01 * done, cpu_seconds=0.0,
                       run_delay=0.0, pid=pid, worker_key=f"pid:{pid}",
                       worker_started_at=now, sampled=sampled)


def test_publisher_counts_pool_workers_only() -> None:
    """The dry run's chunk is the run's, not a worker's: its pid starts no worker."""
    manager, recorder = recording()
    publisher = RunPublisher(RunHooks(managers=(manager,)),
                             RunIdentity("run", "m:f", time.perf_counter(), time.time()),
                             total_items=12)
    plan = OptimizationResult(n_jobs=2, chunksize=4, executor_type="process",
                              estimated_speedup=1.5, reason="test")
    publisher.pre_execute(plan, optimization_seconds=0.0)
    publisher.chunk(report(0, PARENT, 4, sampled=True))
    publisher.chunk(report(1, 101, 4))
    publisher.chunk(report(2, 102, 4))
    publisher.finish("success", 12, serial_seconds=0.12, capacity_seconds=0.1,
                     final_estimate=1.5)
    starts = recorder.of(HookEvent.ON_WORKER_START)
    assert [(c.worker_id, c.pid, c.worker_count) for c in starts] == [(0, 101, 1),
                                                                      (1, 102, 2)]
    ends = recorder.of(HookEvent.ON_WORKER_END)
    assert [(c.worker_id, c.pid, c.worker_count) for c in ends] == [(0, 101, 2), (1, 102, 2)]
    chunks = recorder.of(HookEvent.ON_CHUNK_COMPLETE)
    assert [(c.worker_id, c.sampled) for c in chunks] == [(None, True), (0, False),
                                                          (1, False)]
    [post] = recorder.of(HookEvent.POST_EXECUTE)
    assert (post.worker_count, post.items_completed, post.percent_complete) == (2, 12, 100.0)


# ------------------------------------------------------------------ get_stats()


def test_get_stats_counts_each_event_of_each_run() -> None:
    manager, recorder = recording(HookEvent.PRE_EXECUTE, HookEvent.POST_EXECUTE,
                                  HookEvent.ON_WORKER_START)
    for _ in range(2):
        execute(square, range(10), manager, executor_type="serial", verbose=False)
    stats = manager.get_stats()
    registered = {"pre_execute", "post_execute", "on_worker_start"}
    assert stats["hook_counts"] == {e.value: int(e.value in registered) for e in HookEvent}
    calls = stats["call_counts"]
    assert (calls["pre_execute"], calls["post_execute"], calls["on_worker_start"]) == (2, 2, 2)
    assert set(stats["error_counts"].values()) == {0}
    assert len(recorder.seen) == 6


def test_a_failing_callback_is_counted_and_changes_no_result() -> None:
    manager = HookManager(verbose=False)

    def fails(ctx: HookContext) -> None:
        raise ValueError("callback bug")

    manager.register(HookEvent.PRE_EXECUTE, fails)
    manager.register(HookEvent.POST_EXECUTE, fails)
    assert execute(square, range(10), manager, verbose=False) == [x * x for x in range(10)]
    stats = manager.get_stats()
    assert (stats["call_counts"]["pre_execute"], stats["call_counts"]["post_execute"]) == (1, 1)
    assert (stats["error_counts"]["pre_execute"], stats["error_counts"]["post_execute"]) == (1, 1)


def test_get_stats_counts_a_call_whose_registrations_changed_meanwhile() -> None:
    """A callback that registers and unregisters others while it runs (its own entry is
    replaced and folded meanwhile) is still counted once per call."""
    manager = HookManager()

    def churn(ctx: HookContext) -> None:
        for _ in range(40):
            temporary = Recorder()
            manager.register(HookEvent.ON_PROGRESS, temporary)
            manager.unregister(HookEvent.ON_PROGRESS, temporary)

    manager.register(HookEvent.ON_PROGRESS, churn)
    for _ in range(3):
        manager.trigger(HookContext(event=HookEvent.ON_PROGRESS))
    assert manager.get_stats()["call_counts"]["on_progress"] == 3
    assert manager.get_call_count(HookEvent.ON_PROGRESS) == 3
