"""keep_workers=True: a repeated execute() of the same function reuses warm workers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from amorsize import execute, shutdown_workers, warm_pool
from tests.conftest import live_children
from tests.workloads import heavy, pid_of, raise_on_13, tag

PARENT = os.getpid()


@pytest.fixture(autouse=True)
def no_kept_pool() -> Iterator[None]:
    """Each test starts and ends with no pool kept warm."""
    shutdown_workers()
    yield
    shutdown_workers()


def tag_heavy(x: int) -> tuple[int, int]:
    """A few ms of computing; returns the item and the pid that computed it."""
    heavy(x)
    return x, os.getpid()


def _worker_pids(results: list[tuple[object, int]]) -> set[int]:
    return {pid for _, pid in results} - {PARENT}


def _run(func: object = tag, items: int = 40, keep: bool = True) -> list[tuple[object, int]]:
    return execute(func, range(items), executor_type="process", n_jobs=2, chunksize=4,
                   keep_workers=keep)  # type: ignore[arg-type]


def test_a_repeated_run_of_the_same_function_reuses_the_workers() -> None:
    first = _run()
    kept = {p.pid for p in live_children()}
    assert _worker_pids(first) <= kept  # the workers outlived the first run, on purpose
    second = _run()
    assert [x for x, _ in second] == list(range(40))
    assert _worker_pids(second) and _worker_pids(second) <= kept


def test_shutdown_workers_ends_the_kept_pool(no_leftover_children: None) -> None:
    _run()
    assert live_children()
    shutdown_workers()


def test_another_function_gets_fresh_workers_and_the_old_pool_ends() -> None:
    first = _run(tag)
    second = _run(pid_of)
    assert [x for x, _ in second] == list(range(40))
    assert not _worker_pids(first) & _worker_pids(second)
    alive = {p.pid for p in live_children()}
    assert not _worker_pids(first) & alive


def test_a_failed_run_keeps_no_workers(no_leftover_children: None) -> None:
    with pytest.raises(ValueError):
        _run(raise_on_13)
    assert not live_children()


def test_without_keep_workers_nothing_outlives_the_run(no_leftover_children: None) -> None:
    _run(keep=False)


def test_a_zero_idle_timeout_turns_reuse_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm_pool, "_idle_timeout", 0.0)
    first = _run()
    assert not _worker_pids(first) & {p.pid for p in live_children()}


def test_bad_keep_workers_arguments_fail_at_the_call() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with pytest.raises(TypeError, match="keep_workers"):
        execute(tag, range(3), keep_workers="yes")  # type: ignore[arg-type]
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="keep_workers"):
        execute(tag, range(3), executor=pool, keep_workers=True)
    with pytest.raises(ValueError, match="keep_workers"):
        execute(tag, range(3), keep_workers=True, max_tasks_per_child=1)


def test_a_repeated_automatic_run_runs_every_item_on_the_kept_workers() -> None:
    first = _run(tag_heavy, items=20)
    kept = {p.pid for p in live_children()}
    assert _worker_pids(first) and _worker_pids(first) <= kept
    second = execute(tag_heavy, range(30), keep_workers=True)  # nothing fixed
    assert [x for x, _ in second] == list(range(30))
    assert {pid for _, pid in second} <= kept  # none here, in the calling process
    assert {p.pid for p in live_children()} == kept  # and no other worker started


def test_one_call_never_mixes_the_module_state_of_two_processes() -> None:
    from tests import workloads

    assert execute(workloads.scaled, range(200), executor_type="process", n_jobs=2,
                   keep_workers=True)[:3] == [0, 2, 4]
    workloads.SETTINGS["factor"] = 3  # the kept workers still hold 2
    try:
        results = execute(workloads.scaled, range(1, 401), keep_workers=True)
    finally:
        workloads.SETTINGS["factor"] = 2
    factors = {result // x for x, result in zip(range(1, 401), results, strict=True)}
    assert len(factors) == 1  # all from the workers' copy (or all from here), not both
