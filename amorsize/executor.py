"""execute() and execute_iter(): the public entry points, wired to one `Run` each.

Failures: the function raising re-raises the same exception type (whatever the
executor) with the worker's traceback as its cause and the failing item named; a
worker dying raises `WorkerDiedError` within seconds; a task past `task_timeout`
raises `TaskTimeoutError`; Ctrl-C, and SIGTERM where the application left its default
action, cancel the run. After every outcome no worker process of a pool amorsize made
is left alive (`keep_workers=True` keeps one pool on purpose, which still ends with
this process).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor
from typing import Any, Optional, Union

from amorsize import warm_pool
from amorsize.arguments import RunOptions, check_run
from amorsize.hook_manager import HooksArgument, RunHooks, as_run_hooks
from amorsize.hooks import Hook
from amorsize.run import Run


def _run_hooks(hooks: HooksArgument, options: RunOptions) -> RunHooks:
    """The run's hooks, with the progress bar, verbose printing and report asked for."""
    run_hooks = as_run_hooks(hooks)
    if options.progress:
        if isinstance(options.progress, Hook):
            run_hooks = run_hooks.with_hook(options.progress)
        else:
            from amorsize.progress import ProgressBarHook

            run_hooks = run_hooks.with_hook(ProgressBarHook())
    if options.verbose:
        from amorsize.console import VerboseHook

        run_hooks = run_hooks.with_hook(VerboseHook())
    if options.report is not None:
        from amorsize.report import ReportHook

        run_hooks = run_hooks.with_hook(ReportHook(options.report))
    return run_hooks


def _job(func: Callable[[Any], Any], data: Iterable[Any], hooks: HooksArgument,
         options: RunOptions, return_optimization_result: Any = False) -> Run:
    options = check_run(func, data, options, return_optimization_result)
    return Run(func, data, _run_hooks(hooks, options), options)


def execute(
    func: Callable[[Any], Any],
    data: Iterable[Any],
    hooks: HooksArgument = None,
    *,
    n_jobs: Optional[int] = None,
    chunksize: Optional[int] = None,
    executor: Optional[Executor] = None,
    executor_type: Optional[str] = None,
    sample_size: int = 5,
    target_chunk_duration: float = 0.2,
    return_optimization_result: bool = False,
    total_items: Optional[int] = None,
    progress: Union[bool, Hook] = False,
    progress_interval: float = 0.5,
    max_in_flight: Optional[int] = None,
    min_speedup: float = 1.1,
    max_tasks_per_child: Optional[int] = None,
    mp_context: Any = None,
    keep_workers: bool = False,
    task_timeout: Optional[float] = None,
    verbose: bool = False,
    report: Optional[str] = None,
) -> Any:
    """Run `func` over every item of `data` in parallel where it pays; return the
    results in input order (and the OptimizationResult if asked).

    n_jobs, chunksize, executor or executor_type fix that part of the plan; the rest
    is decided and revised while the job runs. In automatic mode (no executor fixed)
    the first items (`sample_size` at most) run in this process, and every item does
    when the job stays serial; with an executor fixed, none does. `hooks` is a
    HookManager, a Hook object or a list of them. `progress=True` shows a tqdm bar
    (`amorsize[progress]`); `verbose=True` prints the decision and a summary;
    `report="run.html"` writes an HTML report of the run. `task_timeout` (seconds)
    fails a task that runs longer (its worker process is killed; a thread cannot be).
    `keep_workers=True` keeps this run's process pool warm (30 s idle) for the next
    execute() of the same, unchanged function; `shutdown_workers()` ends it sooner.
    """
    options = RunOptions(
        n_jobs=n_jobs, chunksize=chunksize, executor=executor, executor_type=executor_type,
        sample_size=sample_size, target_chunk_duration=target_chunk_duration,
        total_items=total_items, progress=progress, progress_interval=progress_interval,
        max_in_flight=max_in_flight, min_speedup=min_speedup,
        max_tasks_per_child=max_tasks_per_child, mp_context=mp_context,
        keep_workers=keep_workers, task_timeout=task_timeout, verbose=verbose,
        report=report)
    job = _job(func, data, hooks, options, return_optimization_result)
    results = _concatenated(list(job.results()))
    if return_optimization_result:
        return results, job.optimization
    return results


def execute_iter(
    func: Callable[[Any], Any],
    data: Iterable[Any],
    hooks: HooksArgument = None,
    *,
    n_jobs: Optional[int] = None,
    chunksize: Optional[int] = None,
    executor: Optional[Executor] = None,
    executor_type: Optional[str] = None,
    sample_size: int = 5,
    target_chunk_duration: float = 0.2,
    total_items: Optional[int] = None,
    progress: Union[bool, Hook] = False,
    progress_interval: float = 0.5,
    max_in_flight: Optional[int] = None,
    min_speedup: float = 1.1,
    max_tasks_per_child: Optional[int] = None,
    mp_context: Any = None,
    keep_workers: bool = False,
    task_timeout: Optional[float] = None,
    verbose: bool = False,
    report: Optional[str] = None,
) -> Iterator[Any]:
    """Like execute(), but yield results in input order as they arrive.

    Memory stays bounded for unbounded inputs: at most `max_in_flight` tasks are in
    flight or finished but not yet yielded. Arguments are checked now; the work starts
    at the first next(). Closing the iterator early cancels the run.
    """
    options = RunOptions(
        n_jobs=n_jobs, chunksize=chunksize, executor=executor, executor_type=executor_type,
        sample_size=sample_size, target_chunk_duration=target_chunk_duration,
        total_items=total_items, progress=progress, progress_interval=progress_interval,
        max_in_flight=max_in_flight, min_speedup=min_speedup,
        max_tasks_per_child=max_tasks_per_child, mp_context=mp_context,
        keep_workers=keep_workers, task_timeout=task_timeout, verbose=verbose,
        report=report, streaming=True)
    return _flatten(_job(func, data, hooks, options).results())


def shutdown_workers() -> None:
    """End the worker processes a keep_workers=True run kept warm, if any."""
    warm_pool.shutdown_idle()


def _concatenated(chunks: list[list[Any]]) -> list[Any]:
    """Join the chunks' result lists in order, reusing the largest instead of copying it."""
    if not chunks:
        return []
    largest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
    results = chunks[largest]
    if not isinstance(results, list):
        results = list(results)
    if largest:  # C-speed copies: a loop in Python here cost ~15 % of a cheap serial run
        results[0:0] = chunks[0] if largest == 1 else list(
            itertools.chain.from_iterable(chunks[:largest]))
    for chunk in chunks[largest + 1:]:
        results.extend(chunk)
    return results


def _flatten(chunks: Generator[list[Any], None, None]) -> Iterator[Any]:
    """Yield item by item; closing this iterator closes (cancels) the run."""
    try:
        for results in chunks:
            yield from results
    finally:
        chunks.close()
