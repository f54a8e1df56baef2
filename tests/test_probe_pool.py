"""ProbePool: the first decision's cost probe starts the pool the run then uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Optional

import pytest

from amorsize import HookEvent, HookManager, execute, system
from amorsize.probe_pool import ProbePool
from tests.workloads import heavy, pid_of


@pytest.fixture
def no_cached_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from a process that has measured no process costs yet."""
    monkeypatch.setattr(system, "_process_costs", {})


def record_calls(monkeypatch: pytest.MonkeyPatch, method: str,
                 seen: Callable[[ProbePool], Any]) -> list[Any]:
    """Wrap ProbePool.<method> so that each call first records seen(probe); return
    the list of what was recorded."""
    recorded: list[Any] = []
    original = getattr(ProbePool, method)

    def recording(self: ProbePool) -> None:
        recorded.append(seen(self))
        original(self)

    monkeypatch.setattr(ProbePool, method, recording)
    return recorded


def worker_pids(pool: ProcessPoolExecutor) -> set[int]:
    return {p.pid for p in (getattr(pool, "_processes", None) or {}).values() if p.pid}


def test_probe_measures_on_a_pool_it_then_hands_over(
    no_cached_costs: None, no_leftover_children: None
) -> None:
    probe = ProbePool(2)
    costs = probe.costs()
    assert costs.worker_start > 0 and costs.task_roundtrip > 0
    assert system.cached_process_costs(probe.start_method) is costs
    pool = probe.take(2)
    assert pool is not None
    try:
        started = worker_pids(pool)
        assert len(started) == 2
        ran_on = {pool.submit(pid_of, i).result()[1] for i in range(8)}
        assert ran_on <= started  # the workers started while measuring do the work
    finally:
        pool.shutdown(wait=True)
    assert probe.take(2) is None  # handed over once
    probe.close()


def test_probe_pool_of_another_size_is_not_handed_over_and_is_shut_down(
    no_cached_costs: None, no_leftover_children: None
) -> None:
    probe = ProbePool(2)
    probe.costs()
    assert probe.take(3) is None
    assert probe.started
    assert probe._start is not None
    processes = list(getattr(probe._start.pool, "_processes", {}).values())
    assert len(processes) == 2
    probe.close()
    assert not any(process.is_alive() for process in processes)


def test_cached_costs_start_no_pool(no_leftover_children: None) -> None:
    system.process_costs()  # measured (or already cached) for this process
    probe = ProbePool(2)
    assert probe.costs() is system.cached_process_costs(probe.start_method)
    assert not probe.started
    assert probe.take(2) is None


def test_a_pool_started_early_is_handed_over_with_cached_costs(
    no_leftover_children: None
) -> None:
    system.process_costs()
    probe = ProbePool(2)
    probe.start()
    probe.start()  # once
    assert probe.costs() is system.cached_process_costs(probe.start_method)
    pool = probe.take(2)
    assert pool is not None
    try:
        assert pool.submit(pid_of, 3).result()[0] == 3
    finally:
        pool.shutdown(wait=True)


def test_first_execute_runs_on_the_workers_its_probe_started(
    no_cached_costs: None, no_leftover_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[set[int]] = []
    original_take = ProbePool.take

    def recording_take(self: ProbePool, n_jobs: int) -> Optional[ProcessPoolExecutor]:
        pool = original_take(self, n_jobs)
        if pool is not None:
            handed.append(worker_pids(pool))
        return pool

    monkeypatch.setattr(ProbePool, "take", recording_take)
    pids: set[int] = set()
    manager = HookManager()
    manager.register(HookEvent.ON_CHUNK_COMPLETE, lambda ctx: pids.add(ctx.metadata["pid"]))
    results, decision = execute(heavy, range(60), manager, n_jobs=2,
                                executor_type="process", return_optimization_result=True)
    assert results == [heavy(x) for x in range(60)]
    assert len(handed) == 1
    in_workers = pids - {os.getpid()}  # the caller ran the sampled items
    assert len(in_workers) == 2
    assert in_workers <= handed[0]  # no second pool was started


def test_a_started_pool_the_run_does_not_take_is_shut_down(
    no_cached_costs: None, no_leftover_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = record_calls(monkeypatch, "close", lambda probe: probe._start)
    # As when the decision wants another pool (or none): the run starts its own.
    monkeypatch.setattr(ProbePool, "take", lambda self, n_jobs: None)
    results, decision = execute(heavy, range(40), n_jobs=2, executor_type="process",
                                return_optimization_result=True)
    assert results == [heavy(x) for x in range(40)]
    assert closed and closed[0] is not None  # the started, untaken pool was shut down


def slow_then_fail(x: int) -> int:
    """A few ms of computing; item 2 raises (inside the dry run)."""
    if x == 2:
        raise ValueError("item 2 is broken")
    return heavy(x)


def test_a_failure_inside_the_dry_run_shuts_down_the_workers_started_for_it(
    no_cached_costs: None, no_leftover_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = record_calls(monkeypatch, "start", lambda probe: True)
    with pytest.raises(ValueError, match="item 2 is broken"):
        execute(slow_then_fail, range(200), sample_size=5)
    assert started  # the first item started the workers early; none is left behind


def slow_then_interrupt(x: int) -> int:
    """A few ms of computing; Ctrl-C arrives during item 2 (inside the dry run)."""
    if x == 2:
        raise KeyboardInterrupt
    return heavy(x)


def test_ctrl_c_inside_the_dry_run_shuts_down_the_workers_started_for_it(
    no_cached_costs: None, no_leftover_children: None
) -> None:
    with pytest.raises(KeyboardInterrupt):
        execute(slow_then_interrupt, range(200), sample_size=5)
