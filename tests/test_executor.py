"""execute() / execute_iter(): exactly once and in order, streaming, events, failures."""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amorsize.publisher
from amorsize import (
    FunctionExitedError,
    Hook,
    HookContext,
    HookEvent,
    HookManager,
    WorkerDiedError,
    WorkerTraceback,
    execute,
    execute_iter,
)
from amorsize.hooks import HookCallback
from tests.conftest import live_children
from tests.workloads import (
    Boom,
    LockedError,
    exit_3_on_13,
    exit_on_13,
    lock_after_10,
    nap,
    raise_on_13,
    raise_unpicklable_on_13,
    returns_lock,
    sigkill_on_13,
    sleepy_tag,
    square,
    tag,
)

REPO = Path(__file__).resolve().parent.parent
PARENT = os.getpid()


class EventLog(Hook):
    """Records every event, in the order they fire."""

    def __init__(self) -> None:
        self.events: list[HookContext] = []

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Subscribe to every event."""
        return {event: self.events.append for event in HookEvent}

    def of(self, event: HookEvent) -> list[HookContext]:
        """The contexts of one event."""
        return [c for c in self.events if c.event is event]

    def names(self) -> list[str]:
        """Event values in firing order."""
        return [c.event.value for c in self.events]


class CountingTag:
    """tag() that counts its calls per item in the process it runs in."""

    def __init__(self) -> None:
        self.calls: collections.Counter[Any] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, x: Any) -> tuple[Any, int]:
        with self.lock:
            self.calls[x] += 1
        return x, os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"calls": collections.Counter()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.lock = threading.Lock()


def counting(values: Iterable[Any], read: list[int]) -> Iterator[Any]:
    """Yield `values`, counting in read[0] how many were read."""
    for value in values:
        read[0] += 1
        yield value


def failing_source(good: int) -> Iterator[int]:
    """Yield `good` items, then fail like a broken data source."""
    yield from range(good)
    raise ConnectionError("data source went away")


def make_data(kind: str, values: list[int]) -> Iterable[int]:
    """The same values as a list, a range or a generator."""
    if kind == "list":
        return list(values)
    if kind == "range":
        return range(values[0], values[0] + len(values)) if values else range(0)
    return (v for v in values)


def check_run(log: EventLog, values: list[int], status: str = "success") -> None:
    """The invariants every run's events obey."""
    names = log.names()
    assert names.count("pre_execute") == 1 and names[0] == "pre_execute"
    assert names.count("post_execute") == 1 and names[-1] == "post_execute"
    post = log.of(HookEvent.POST_EXECUTE)[0]
    assert post.status == status
    chunks = log.of(HookEvent.ON_CHUNK_COMPLETE)
    if status == "success":
        assert sum(c.chunk_size for c in chunks) == len(values)
        assert sorted(c.chunk_id or 0 for c in chunks) == list(range(len(chunks)))
        assert post.items_completed == post.results_count == len(values)
    starts = [c.worker_id or 0 for c in log.of(HookEvent.ON_WORKER_START)]
    ends = [c.worker_id or 0 for c in log.of(HookEvent.ON_WORKER_END)]
    assert len(starts) == len(set(starts))
    assert sorted(starts) == sorted(ends)
    assert {c.worker_id for c in chunks if not c.sampled} <= set(starts)
    assert all(c.worker_id is None for c in chunks if c.sampled)


# ------------------------------------------------------------------ exactly once, in order

values_strategy = st.integers(-1000, 1000).flatmap(
    lambda start: st.integers(0, 60).map(lambda n: list(range(start, start + n)))
)
kind_strategy = st.sampled_from(["list", "range", "generator"])
chunk_strategy = st.none() | st.integers(1, 7)


@settings(max_examples=40, deadline=None)
@given(values=values_strategy, kind=kind_strategy, chunksize=chunk_strategy,
       sample_size=st.integers(1, 6), streaming=st.booleans())
def test_serial_every_item_exactly_once_in_order(
    values: list[int], kind: str, chunksize: Optional[int], sample_size: int, streaming: bool
) -> None:
    func, log = CountingTag(), EventLog()
    data = make_data(kind, values)
    options: dict[str, Any] = {"executor_type": "serial", "chunksize": chunksize,
                               "sample_size": sample_size}
    if streaming:
        results = list(execute_iter(func, data, log, **options))
    else:
        results = execute(func, data, log, **options)
    assert [x for x, _ in results] == values
    assert {pid for _, pid in results} <= {PARENT}
    assert func.calls == collections.Counter(values)
    check_run(log, values)


@settings(max_examples=30, deadline=None)
@given(values=values_strategy, kind=kind_strategy, chunksize=chunk_strategy,
       n_jobs=st.none() | st.integers(2, 4), sample_size=st.integers(1, 6),
       streaming=st.booleans())
def test_thread_every_item_exactly_once_in_order(
    values: list[int], kind: str, chunksize: Optional[int], n_jobs: Optional[int],
    sample_size: int, streaming: bool
) -> None:
    func, log = CountingTag(), EventLog()
    data = make_data(kind, values)
    options: dict[str, Any] = {"executor_type": "thread", "chunksize": chunksize,
                               "n_jobs": n_jobs, "sample_size": sample_size}
    if streaming:
        results = list(execute_iter(func, data, log, **options))
    else:
        results = execute(func, data, log, **options)
    assert [x for x, _ in results] == values
    assert func.calls == collections.Counter(values)
    check_run(log, values)


@settings(max_examples=15, deadline=None)
@given(values=values_strategy, kind=kind_strategy, chunksize=chunk_strategy,
       sample_size=st.integers(1, 6), streaming=st.booleans())
def test_process_every_item_exactly_once_in_order(
    values: list[int], kind: str, chunksize: Optional[int], sample_size: int, streaming: bool
) -> None:
    before = {p.pid for p in live_children()}
    func, log = CountingTag(), EventLog()
    data = make_data(kind, values)
    options: dict[str, Any] = {"executor_type": "process", "n_jobs": 2,
                               "chunksize": chunksize, "sample_size": sample_size}
    if streaming:
        results = list(execute_iter(func, data, log, **options))
    else:
        results = execute(func, data, log, **options)
    assert [x for x, _ in results] == values
    check_run(log, values)
    # executor_type="process" was asked for: every item ran in a worker, none here.
    assert func.calls == collections.Counter()
    assert all(pid != PARENT for _, pid in results)
    chunks = log.of(HookEvent.ON_CHUNK_COMPLETE)
    assert not any(c.sampled for c in chunks)
    assert sum(c.chunk_size for c in chunks) == len(values)
    assert all(c.pid != PARENT for c in chunks)
    assert [p.pid for p in live_children() if p.pid not in before] == []  # pool joined


@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
@pytest.mark.parametrize("data", [[], range(0), iter(())], ids=["list", "range", "generator"])
def test_empty_input(executor_type: str, data: Iterable[int],
                     no_leftover_children: None) -> None:
    log = EventLog()
    assert execute(square, data, log, executor_type=executor_type) == []
    check_run(log, [])
    assert log.of(HookEvent.ON_CHUNK_COMPLETE) == []
    progress = log.of(HookEvent.ON_PROGRESS)
    assert progress and progress[-1].percent_complete == 100.0


def test_automatic_decision_keeps_order() -> None:
    values = list(range(3000))
    results, decision = execute(square, values, return_optimization_result=True)
    assert results == [x * x for x in values]
    assert decision.executor_type == "serial"


# ------------------------------------------------------------------ caller-owned executors


@pytest.mark.parametrize("pool_class", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_caller_executor_is_used_and_left_open(
    pool_class: type[ThreadPoolExecutor] | type[ProcessPoolExecutor],
) -> None:
    log = EventLog()
    with pool_class(max_workers=2) as pool:
        results = execute(tag, range(30), log, executor=pool, chunksize=4)
        assert [x for x, _ in results] == list(range(30))
        assert pool.submit(square, 7).result(timeout=30) == 49
        with pytest.raises(Boom):
            execute(raise_on_13, range(30), executor=pool, chunksize=3)
        assert pool.submit(square, 8).result(timeout=30) == 64
    check_run(log, list(range(30)))
    pre = log.of(HookEvent.PRE_EXECUTE)[0]
    expected = "thread" if pool_class is ThreadPoolExecutor else "process"
    assert pre.executor_type == expected
    assert pre.n_jobs == 2


class InlineExecutor(Executor):
    """A foreign Executor that runs each task at once in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` now and return a finished future."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


def test_foreign_executor_runs_and_warns_about_its_size() -> None:
    results, decision = execute(tag, range(20), executor=InlineExecutor(), chunksize=3,
                                return_optimization_result=True)
    assert [x for x, _ in results] == list(range(20))
    assert decision.executor_type == "external"
    assert any("n_jobs" in w for w in decision.warnings)


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
@pytest.mark.parametrize("fixed", [True, False], ids=["fixed", "sampled"])
def test_execute_iter_reads_ahead_a_bounded_amount(executor_type: str, fixed: bool,
                                                   no_leftover_children: None) -> None:
    read = [0]
    sizes: list[int] = []
    hooks = HookManager()
    hooks.register(HookEvent.ON_CHUNK_COMPLETE, lambda c: sizes.append(c.chunk_size))
    sample_size = 4
    stream = execute_iter(
        tag, counting(range(300), read), hooks, executor_type=executor_type,
        n_jobs=None if executor_type == "serial" else 2, chunksize=3 if fixed else None,
        max_in_flight=2, sample_size=sample_size, total_items=300,
    )
    assert read[0] == 0  # nothing happens before the first next()
    consumed = 0
    ahead = 0
    for x, _ in stream:
        assert x == consumed
        consumed += 1
        ahead = max(ahead, read[0] - consumed)
    assert consumed == 300
    # At most max_in_flight tasks (the largest seen) are read ahead; nothing ran in
    # this process but the tasks of a serial run (the executor type was fixed).
    in_flight = 1 if executor_type == "serial" else 2
    assert ahead <= in_flight * max(sizes)


def test_execute_iter_in_process_holds_a_bounded_chunk_of_results() -> None:
    from amorsize.run import STREAMING_SERIAL_CHUNK

    total = 3 * STREAMING_SERIAL_CHUNK + 7
    read = [0]
    sizes: list[int] = []
    hooks = HookManager()
    hooks.register(HookEvent.ON_CHUNK_COMPLETE, lambda c: sizes.append(c.chunk_size))
    stream = execute_iter(square, counting(range(total), read), hooks,
                          executor_type="serial", total_items=total)
    consumed = 0
    ahead = 0
    for value in stream:
        assert value == consumed * consumed
        consumed += 1
        ahead = max(ahead, read[0] - consumed)
    assert consumed == total
    assert max(sizes) <= STREAMING_SERIAL_CHUNK
    assert ahead <= STREAMING_SERIAL_CHUNK
    assert sum(sizes) == total


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_type", ["thread", "process"])
def test_execute_iter_on_an_unbounded_input_can_be_closed(
    executor_type: str, no_leftover_children: None
) -> None:
    read = [0]
    log = EventLog()
    stream = execute_iter(tag, counting(itertools.count(), read), log,
                          executor_type=executor_type, n_jobs=2, chunksize=4, max_in_flight=3)
    first = list(itertools.islice(stream, 50))
    assert [x for x, _ in first] == list(range(50))
    assert read[0] <= 50 + 3 * 4
    stream.close()  # type: ignore[attr-defined]
    names = log.names()
    assert names[0] == "pre_execute" and names[-1] == "post_execute"
    assert log.of(HookEvent.POST_EXECUTE)[0].status == "cancelled"
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1 and errors[0].status == "cancelled"


# ------------------------------------------------------------------ events with real data


def test_process_events_carry_worker_measured_data(no_leftover_children: None) -> None:
    log = EventLog()
    nap_seconds = 0.02
    results = execute(sleepy_tag, range(20), log, executor_type="process", n_jobs=2,
                      chunksize=2, progress_interval=0)
    assert [x for x, _ in results] == list(range(20))
    check_run(log, list(range(20)))
    chunks = log.of(HookEvent.ON_CHUNK_COMPLETE)
    assert len(chunks) == 10
    pids = {c.pid for c in chunks}
    assert PARENT not in pids
    assert pids == {pid for _, pid in results}
    assert len(pids) == 2
    for chunk in chunks:
        assert chunk.chunk_size == 2
        assert chunk.chunk_time >= 2 * nap_seconds  # measured in the worker, around the calls
        assert chunk.chunk_started_at is not None and chunk.chunk_ended_at is not None
        assert chunk.chunk_started_at <= chunk.chunk_ended_at
        assert chunk.n_jobs == 2 and chunk.chunksize == 2
    assert [c.items_completed for c in chunks] == list(range(2, 21, 2))

    events = log.events
    for start in log.of(HookEvent.ON_WORKER_START):
        own = [i for i, c in enumerate(events) if c.event is HookEvent.ON_CHUNK_COMPLETE
               and c.worker_id == start.worker_id]
        assert events.index(start) < own[0]
        assert {events[i].pid for i in own} == {start.pid}
        assert start.metadata["worker_started_at"] <= events[own[0]].chunk_started_at
    assert len(log.of(HookEvent.ON_WORKER_START)) == 2
    last_chunk = max(i for i, c in enumerate(events) if c.event is HookEvent.ON_CHUNK_COMPLETE)
    for end in log.of(HookEvent.ON_WORKER_END):
        assert events.index(end) > last_chunk
        own_chunks = [c for c in chunks if c.worker_id == end.worker_id]
        assert end.metadata["chunks"] == len(own_chunks)
        assert end.metadata["items"] == sum(c.chunk_size for c in own_chunks)
        assert end.metadata["busy_seconds"] == pytest.approx(
            sum(c.chunk_time for c in own_chunks))
        assert end.worker_count == 2

    pre = log.of(HookEvent.PRE_EXECUTE)[0]
    assert (pre.n_jobs, pre.chunksize, pre.total_items) == (2, 2, 20)
    assert pre.executor_type == pre.metadata["executor_type"] == "process"
    assert pre.function == "tests.workloads:sleepy_tag"
    assert pre.execution_id and all(c.execution_id == pre.execution_id for c in log.events)
    assert {"estimated_speedup", "reason"} <= set(pre.metadata)

    progress = log.of(HookEvent.ON_PROGRESS)
    assert len(progress) == len(chunks)
    percents = [p.percent_complete or 0.0 for p in progress]
    assert percents == sorted(percents)
    final = progress[-1]
    assert final.percent_complete == 100.0 and final.items_remaining == 0
    assert final.items_completed == 20 and final.throughput_items_per_sec > 0

    post = log.of(HookEvent.POST_EXECUTE)[0]
    assert post.elapsed_time > 0 and post.throughput_items_per_sec > 0
    for key in ("executor_type", "estimated_speedup", "actual_speedup", "parallel_efficiency"):
        assert key in post.metadata
    assert post.actual_speedup is not None and post.actual_speedup > 0
    assert post.parallel_efficiency is not None and post.parallel_efficiency > 0
    assert (post.items_completed, post.items_remaining, post.percent_complete) == (20, 0, 100.0)


def test_progress_is_throttled_with_a_final_event() -> None:
    log = EventLog()
    execute(nap, range(30), log, executor_type="thread", n_jobs=2, chunksize=1,
            progress_interval=3600)
    progress = log.of(HookEvent.ON_PROGRESS)
    assert len(progress) == 2
    assert progress[0].items_completed == 1
    assert progress[-1].percent_complete == 100.0
    assert log.names()[-1] == "post_execute"


def test_unknown_total_reports_100_percent_at_the_end() -> None:
    log = EventLog()
    execute(square, (x for x in range(40)), log, executor_type="thread", n_jobs=2,
            chunksize=5, progress_interval=0)
    progress = log.of(HookEvent.ON_PROGRESS)
    assert all(p.percent_complete is None for p in progress[:-1])
    assert progress[-1].percent_complete == 100.0
    assert progress[-1].total_items == 40


@pytest.mark.parametrize("chunksize", [3, None], ids=["fixed", "sampled"])
def test_serial_path_fires_the_same_events_as_worker_0(chunksize: Optional[int]) -> None:
    log = EventLog()
    results = execute(tag, range(20), log, executor_type="serial", chunksize=chunksize,
                      progress_interval=0)
    assert results == [(x, PARENT) for x in range(20)]
    check_run(log, list(range(20)))
    assert {e.value for e in HookEvent} - {"on_error", "on_plan_change"} == set(log.names())
    worker_events = [c for c in log.events if c.event in (
        HookEvent.ON_WORKER_START, HookEvent.ON_CHUNK_COMPLETE, HookEvent.ON_WORKER_END)]
    assert {c.worker_id for c in worker_events} == {0}
    assert {c.pid for c in worker_events} == {PARENT}
    assert len(log.of(HookEvent.ON_WORKER_START)) == 1
    assert len(log.of(HookEvent.ON_WORKER_END)) == 1
    assert log.of(HookEvent.PRE_EXECUTE)[0].executor_type == "serial"


def test_thread_workers_are_told_apart() -> None:
    execute(square, range(10), executor_type="thread", n_jobs=2, chunksize=2)  # earlier run
    log = EventLog()
    execute(nap, range(40), log, executor_type="thread", n_jobs=4, chunksize=2)
    check_run(log, list(range(40)))
    chunk_pids = {c.pid for c in log.of(HookEvent.ON_CHUNK_COMPLETE)}
    assert chunk_pids == {PARENT}
    starts = log.of(HookEvent.ON_WORKER_START)
    assert len({c.metadata["worker_key"] for c in starts}) >= 2
    begun = log.of(HookEvent.PRE_EXECUTE)[0].timestamp
    assert all(c.metadata["worker_started_at"] >= begun for c in starts)  # each thread's own


class CountingContext(HookContext):
    """HookContext that counts how many were built."""

    built = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountingContext.built += 1


@pytest.mark.parametrize("executor_type", ["serial", "process"])
def test_no_context_is_built_without_hooks(monkeypatch: pytest.MonkeyPatch,
                                           executor_type: str) -> None:
    monkeypatch.setattr(amorsize.publisher, "HookContext", CountingContext)
    CountingContext.built = 0
    execute(square, range(50), executor_type=executor_type, chunksize=5)
    execute(square, range(50), HookManager(), executor_type=executor_type, chunksize=5)
    assert CountingContext.built == 0
    hooks = HookManager()
    hooks.register(HookEvent.POST_EXECUTE, lambda c: None)
    execute(square, range(50), hooks, executor_type=executor_type, chunksize=5)
    assert CountingContext.built == 1


def test_raising_hooks_never_change_results() -> None:
    hooks = HookManager()

    def broken(context: HookContext) -> None:
        raise RuntimeError("hook bug")

    for event in HookEvent:
        hooks.register(event, broken)
    results = execute(tag, range(30), hooks, executor_type="thread", n_jobs=2, chunksize=4)
    assert [x for x, _ in results] == list(range(30))
    stats = hooks.get_stats()
    assert stats["error_counts"]["pre_execute"] == 1
    assert stats["error_counts"]["post_execute"] == 1
    assert stats["error_counts"]["on_chunk_complete"] == 8


def test_hook_objects_and_lists_are_accepted() -> None:
    first, second = EventLog(), EventLog()
    execute(square, range(10), first)
    execute(square, range(10), [first, second])
    assert first.names().count("post_execute") == 2
    assert second.names().count("post_execute") == 1


def test_return_optimization_result() -> None:
    results, decision = execute(square, range(10), return_optimization_result=True,
                                executor_type="thread", n_jobs=2, chunksize=3)
    assert results == [x * x for x in range(10)]
    assert (decision.executor_type, decision.n_jobs, decision.chunksize) == ("thread", 2, 3)


# ------------------------------------------------------------------ failures


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
def test_function_error_reraised_with_worker_traceback(executor_type: str,
                                                       no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(Boom, match="item 13 is unlucky") as caught:
        execute(raise_on_13, range(40), log, executor_type=executor_type,
                n_jobs=None if executor_type == "serial" else 2, chunksize=3)
    error = caught.value
    if executor_type == "process":
        assert isinstance(error.__cause__, WorkerTraceback)
        assert "raise_on_13" in error.__cause__.traceback_text
        assert "raise_on_13" in str(error.__cause__)
    else:
        frames = [f.name for f in traceback.extract_tb(error.__traceback__)]
        assert "raise_on_13" in frames
    check_run(log, list(range(40)), status="error")
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1
    assert type(errors[0].error) is Boom
    assert errors[0].error_message == "item 13 is unlucky"
    assert errors[0].error_traceback is not None
    assert "raise_on_13" in errors[0].error_traceback
    assert errors[0].chunk_id == 4  # items 12, 13, 14
    assert errors[0].status == "error" and errors[0].error_type == "Boom"
    assert 4 not in [c.chunk_id for c in log.of(HookEvent.ON_CHUNK_COMPLETE)]
    assert log.of(HookEvent.ON_PROGRESS) == [] or log.of(
        HookEvent.ON_PROGRESS)[-1].items_completed < 40


def test_error_on_a_sampled_item(no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(Boom):
        execute(raise_on_13, range(10, 30), log, executor_type="process", n_jobs=2)
    check_run(log, [], status="error")
    assert len(log.of(HookEvent.ON_ERROR)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("func", [exit_on_13, sigkill_on_13], ids=["os._exit", "SIGKILL"])
def test_dead_worker_raises_worker_died_error(func: Callable[[int], int],
                                              no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(WorkerDiedError, match="worker process died"):
        execute(func, range(200), log, executor_type="process", n_jobs=2, chunksize=2)
    check_run(log, [], status="error")
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1 and isinstance(errors[0].error, WorkerDiedError)


@pytest.mark.timeout(60)
def test_dead_worker_with_sampling(no_leftover_children: None) -> None:
    with pytest.raises(WorkerDiedError):
        execute(exit_on_13, range(100), executor_type="process", n_jobs=2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("func", [returns_lock, lock_after_10], ids=["fixed", "sampled"])
def test_unpicklable_result_fails_cleanly(func: Callable[[int], Any],
                                          no_leftover_children: None) -> None:
    log = EventLog()
    chunksize = 2 if func is returns_lock else None
    with pytest.raises(TypeError, match="pickle"):
        execute(func, range(30), log, executor_type="process", n_jobs=2, chunksize=chunksize)
    check_run(log, [], status="error")
    assert len(log.of(HookEvent.ON_ERROR)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
@pytest.mark.parametrize("good", [2, 25], ids=["in-sample", "later"])
def test_input_generator_error_is_raised(executor_type: str, good: int,
                                         no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(ConnectionError, match="data source went away"):
        execute(square, failing_source(good), log, executor_type=executor_type,
                n_jobs=None if executor_type == "serial" else 2)
    check_run(log, [], status="error")
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1 and isinstance(errors[0].error, ConnectionError)


@pytest.mark.timeout(120)
def test_max_tasks_per_child_reports_every_chunk(no_leftover_children: None) -> None:
    log = EventLog()
    results = execute(tag, range(8), log, executor_type="process", n_jobs=2, chunksize=2,
                      max_tasks_per_child=1)
    assert [x for x, _ in results] == list(range(8))
    check_run(log, list(range(8)))
    chunks = log.of(HookEvent.ON_CHUNK_COMPLETE)
    assert len(chunks) == 4
    pids = [c.pid for c in chunks]
    assert len(set(pids)) == 4 and PARENT not in pids
    assert len(log.of(HookEvent.ON_WORKER_START)) == 4
    assert len(log.of(HookEvent.ON_WORKER_END)) == 4


INTERRUPTED_CHILD = textwrap.dedent(
    """
    import signal
    from amorsize import HookEvent, HookManager, execute
    from tests.workloads import nap

    # A runner started in the background ignores SIGINT; a terminal user's Ctrl-C doesn't.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hooks = HookManager()
    hooks.register(HookEvent.ON_WORKER_START,
                   lambda c: print("WORKER", c.pid, flush=True))
    hooks.register(HookEvent.ON_ERROR,
                   lambda c: print("ERROR", type(c.error).__name__, flush=True))
    hooks.register(HookEvent.POST_EXECUTE,
                   lambda c: print("POST", c.status, flush=True))
    execute(nap, range(1_000_000), hooks, executor_type="process", n_jobs=2, chunksize=1)
    print("FINISHED", flush=True)
    """
)


def gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie counts as ended)."""
    try:
        status = str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return True
    return status == psutil.STATUS_ZOMBIE


@pytest.mark.timeout(90)
@pytest.mark.parametrize("whole_group", [False, True], ids=["parent-only", "process-group"])
def test_keyboard_interrupt_stops_every_worker(whole_group: bool,
                                               no_leftover_children: None) -> None:
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED_CHILD], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert child.stdout is not None
        reported: set[int] = set()
        while len(reported) < 2:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.communicate()}"
            if line.startswith("WORKER"):
                reported.add(int(line.split()[1]))
        workers = {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
        assert reported <= workers
        if whole_group:
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # failed above: never leave the job running
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    assert child.returncode == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err
    lines = out.splitlines()
    assert "ERROR KeyboardInterrupt" in lines
    assert lines.count("POST cancelled") == 1 and lines[-1] == "POST cancelled"
    assert "FINISHED" not in lines
    deadline = time.monotonic() + 5
    while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if not gone(pid)]
    for pid in survivors:  # the check below fails; still, leave nothing running
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
def test_sys_exit_in_the_function_is_an_error_naming_the_item(
        executor_type: str, no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(FunctionExitedError, match="sys.exit.3. on the item at input "
                       "position 13") as caught:
        execute(exit_3_on_13, range(40), log, executor_type=executor_type,
                n_jobs=None if executor_type == "serial" else 2, chunksize=3)
    assert caught.value.code == 3 and caught.value.position == 13
    if executor_type == "process":
        assert isinstance(caught.value.__cause__, WorkerTraceback)
        assert "exit_3_on_13" in caught.value.__cause__.traceback_text
    check_run(log, [], status="error")
    assert len(log.of(HookEvent.ON_ERROR)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_type", ["serial", "thread", "process"])
def test_an_exception_that_cannot_be_pickled_keeps_its_type(
        executor_type: str, no_leftover_children: None) -> None:
    log = EventLog()
    with pytest.raises(LockedError, match="item 13 holds a lock") as caught:
        execute(raise_unpicklable_on_13, range(40), log, executor_type=executor_type,
                n_jobs=None if executor_type == "serial" else 2, chunksize=3)
    if executor_type == "process":  # rebuilt by value: the lock could not travel
        assert caught.value.lock is None
        assert isinstance(caught.value.__cause__, WorkerTraceback)
    else:  # same memory: the original object
        assert caught.value.lock is not None
    check_run(log, [], status="error")
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1 and errors[0].error_type == "LockedError"


def test_interrupt_while_sampling_is_reported_as_cancelled() -> None:
    log = EventLog()

    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(interrupted, range(10), log)
    check_run(log, [], status="cancelled")
    errors = log.of(HookEvent.ON_ERROR)
    assert len(errors) == 1 and isinstance(errors[0].error, KeyboardInterrupt)


def test_refused_decision_is_reported_as_a_failed_run() -> None:
    log = EventLog()
    with pytest.raises(TypeError, match="picklable"):
        execute(square, [threading.Lock() for _ in range(5)], log, executor_type="process")
    check_run(log, [], status="error")
    assert len(log.of(HookEvent.ON_ERROR)) == 1


@pytest.mark.parametrize("good", [2, 25], ids=["in-sample", "later"])
def test_progress_bar_is_taken_off_the_callers_manager(good: int) -> None:
    manager = HookManager()
    with pytest.raises(ConnectionError):
        execute(square, failing_source(good), manager, executor_type="serial", progress=True)
    assert not manager.active_events()
    execute(square, range(10), manager, progress=True)
    assert not manager.active_events()


def test_worker_traceback_text() -> None:
    text = "Traceback (most recent call last):\n  ...\nValueError: x"
    error = WorkerTraceback(text)
    assert error.traceback_text == text
    assert str(error).strip() == text


@pytest.mark.parametrize("sizes", [[], [3], [5, 40, 60], [40, 5], [2, 3, 50, 4, 1],
                                   [0, 7, 0]])
def test_task_results_are_joined_in_order_whichever_task_is_largest(sizes: list[int]
                                                                     ) -> None:
    from amorsize.executor import _concatenated

    chunks, start = [], 0
    for size in sizes:
        chunks.append(list(range(start, start + size)))
        start += size
    assert _concatenated(chunks) == list(range(start))


def test_a_serial_run_over_a_list_hands_each_task_the_whole_rest_and_stops_it_by_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks in the calling process over a list, tuple or range are stopped at their
    planned time, not cut at a planned count: a run that ends within one task's time
    has no result lists to join."""
    import amorsize.run

    handed: list[tuple[int, float]] = []
    real = amorsize.run.run_task

    def spy(func: Any, key: int, chunk_id: int, items: Any, budget: float = 0.0,
            *args: Any, **kwargs: Any) -> Any:
        handed.append((len(items), budget))
        return real(func, key, chunk_id, items, budget, *args, **kwargs)

    monkeypatch.setattr(amorsize.run, "run_task", spy)
    monkeypatch.setattr(amorsize.run, "SERIAL_TASK_SECONDS", 1e-6)  # plans tiny tasks
    data = list(range(30_000))
    assert execute(square, data, n_jobs=1, target_chunk_duration=0.001) == [
        x * x for x in data]
    # No estimate before the first task: one item; then the whole rest, stopped after
    # the planned time (never below the budget floor).
    assert handed[0][0] == 1
    assert handed[1] == (len(data) - 1, amorsize.policy.BUDGET_FLOOR_SECONDS)
    assert sum(size for size, _ in handed) >= len(data)
