"""Adaptive execution with real pools: what the plan becomes, never how long it took.

The decisions here rest on properties large enough that no machine load flips them: a
function that only computes is never read as one that waits, whatever the start
method and however busy the machine; items that turn a hundred times dearer along
the input move a serial run to a pool.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from amorsize import HookEvent, HookManager, execute, system
from tests.workloads import spin

METHODS = [m for m in ("fork", "forkserver", "spawn")
           if m in multiprocessing.get_all_start_methods()]


def cpu_bound(x: int) -> int:
    """About 2 ms of pure-Python computing, no waiting."""
    return spin(x, 40_000)


def rising(x: int) -> int:
    """Cheap at first; from item 20 on about a hundred times dearer."""
    return spin(x, 200 if x < 20 else 40_000)


# Where threads run Python code one at a time, a computing function belongs in
# processes; on a free-threaded build threads compute side by side, and the cost model
# may rightly prefer them (no pickling, no process start): there the check is that it
# runs in parallel, on at most one thread per core.
GIL = system.gil_enabled()


def check_computing_plan(seen: list[str], workers: list[int]) -> None:
    """A computing function's plans, as the interpreter's GIL allows."""
    if GIL:
        assert "thread" not in seen, seen
    else:
        thread_pools = [n for kind, n in zip(seen, workers, strict=True) if kind == "thread"]
        assert all(n <= max(2, system.usable_cores()) for n in thread_pools), (seen, workers)


def plans(hooks: HookManager, workers: Optional[list[int]] = None) -> list[str]:
    """A recorder of the executor of every plan a run had (first, then revisions)."""
    seen: list[str] = []
    counts = workers if workers is not None else []

    def record(ctx: Any) -> None:
        seen.append(ctx.executor_type)
        counts.append(ctx.n_jobs)

    hooks.register(HookEvent.PRE_EXECUTE, record)
    hooks.register(HookEvent.ON_PLAN_CHANGE, record)
    return seen


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """One busy loop per core beside the test."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("method", METHODS)
def test_a_computing_function_never_goes_to_threads_whatever_the_start_method(
        method: str, no_leftover_children: None) -> None:
    hooks = HookManager()
    workers: list[int] = []
    seen = plans(hooks, workers)
    # A spawned worker starts a fresh interpreter (0.1-0.3 s each here, more on a busy
    # machine): 300 items (~0.6 s) can rightly stay serial; 1200 (~2.4 s) cannot.
    items = range(1200 if method == "spawn" else 300)
    results, opt = execute(cpu_bound, items, hooks,
                           mp_context=multiprocessing.get_context(method),
                           return_optimization_result=True)
    assert results == [cpu_bound(x) for x in items]
    check_computing_plan(seen, workers)
    if system.usable_cores() >= 2:
        parallel = {"process"} if GIL else {"process", "thread"}
        assert parallel & set(seen), (seen, opt.reason, opt.revisions, opt.figures)


@pytest.mark.timeout(180)
def test_a_computing_function_never_goes_to_threads_on_a_busy_machine(
        busy_machine: None, no_leftover_children: None) -> None:
    for _ in range(3):
        hooks = HookManager()
        workers: list[int] = []
        seen = plans(hooks, workers)
        assert execute(cpu_bound, range(60), hooks) == [cpu_bound(x) for x in range(60)]
        check_computing_plan(seen, workers)


@pytest.mark.timeout(180)
@pytest.mark.skipif(system.usable_cores() < 2, reason="a pool cannot pay on one core")
def test_items_that_turn_dear_move_a_serial_run_to_a_pool(
        no_leftover_children: None) -> None:
    hooks = HookManager()
    seen = plans(hooks)
    reasons: list[Any] = []
    hooks.register(HookEvent.ON_PLAN_CHANGE, lambda ctx: reasons.append(ctx.metadata))
    results = execute(rising, range(400), hooks)
    assert results == [rising(x) for x in range(400)]
    if GIL:
        assert seen[0] == "serial" and seen[-1] == "process", seen
        assert any("dear enough for a pool" in r.get("reason", "") for r in reasons), reasons
    else:  # threads start in ~0.2 ms: the cheap first items may already pay for them
        assert seen[-1] in ("process", "thread"), seen


@pytest.mark.timeout(120)
def test_a_waiting_function_goes_to_threads_and_many_of_them(
        no_leftover_children: None) -> None:
    from tests.workloads import nap

    hooks = HookManager()
    seen = plans(hooks)
    workers: list[int] = []
    hooks.register(HookEvent.PRE_EXECUTE, lambda ctx: workers.append(ctx.n_jobs))
    assert execute(nap, range(200), hooks) == list(range(200))
    assert seen[0] == "thread" and workers[0] > system.usable_cores()
