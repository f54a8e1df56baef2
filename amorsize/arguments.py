"""Checks of execute() / execute_iter() / optimize() arguments, at the call.

Bad input gets a TypeError or ValueError that names the parameter and the fix, before
any work starts: never a traceback from deep inside a worker.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

from amorsize.costmodel import EXECUTOR_TYPES
from amorsize.hooks import Hook

# The dry run keeps every sampled result and item: more than this is no dry run.
MAX_SAMPLE_SIZE = 10_000
# Most workers of a pool amorsize starts, per usable core (and at least MIN_WORKER_CAP).
WORKERS_PER_CORE_CAP = 8
MIN_WORKER_CAP = 64
# Most workers a caller's executor may be told it has.
MAX_EXTERNAL_WORKERS = 100_000


def _number(name: str, value: Any, *, positive: bool, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and positive and not allow_zero):
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {need}, got {value!r}")
    return float(value)


def _int(name: str, value: Any, smallest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {smallest}, got {type(value).__name__}")
    if value < smallest:
        raise ValueError(f"{name} must be >= {smallest}, got {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def worker_cap() -> int:
    """Most workers amorsize starts in one pool on this machine."""
    from amorsize import system

    return max(MIN_WORKER_CAP, WORKERS_PER_CORE_CAP * system.usable_cores())


def check_common(func: Any, data: Any, *, sample_size: Any, target_chunk_duration: Any,
                 n_jobs: Any, chunksize: Any, executor_type: Any, total_items: Any,
                 min_speedup: Any, verbose: Any = False) -> None:
    """The checks execute() and optimize() share."""
    from amorsize.sampling import known_length

    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError("data must be an iterable of items (list, range, generator...), "
                        f"got {type(data).__name__}")
    known_length(data)  # a length that overflows is named here
    _int("sample_size", sample_size)
    if sample_size > MAX_SAMPLE_SIZE:
        raise ValueError(f"sample_size must be at most {MAX_SAMPLE_SIZE} (the dry run keeps "
                         f"every sampled item and result), got {sample_size}")
    _number("target_chunk_duration", target_chunk_duration, positive=True)
    if n_jobs is not None:
        _int("n_jobs", n_jobs)
    if chunksize is not None:
        _int("chunksize", chunksize)
    if executor_type is not None and executor_type not in EXECUTOR_TYPES:
        raise ValueError(f"executor_type must be one of {', '.join(EXECUTOR_TYPES)} or None, "
                         f"got {executor_type!r}")
    if total_items is not None:
        _int("total_items", total_items, smallest=0)
    _number("min_speedup", min_speedup, positive=True)
    _flag("verbose", verbose)


@dataclass(frozen=True)
class RunOptions:
    """execute()'s keyword arguments, checked."""

    n_jobs: Optional[int] = None
    chunksize: Optional[int] = None
    executor: Optional[Executor] = None
    executor_type: Optional[str] = None
    sample_size: int = 5
    target_chunk_duration: float = 0.2
    total_items: Optional[int] = None
    progress: Union[bool, Hook] = False
    progress_interval: float = 0.5
    max_in_flight: Optional[int] = None
    min_speedup: float = 1.1
    max_tasks_per_child: Optional[int] = None
    mp_context: Any = None
    keep_workers: bool = False
    task_timeout: Optional[float] = None
    verbose: bool = False
    report: Any = None  # a path (str or os.PathLike)
    streaming: bool = False

    @property
    def automatic(self) -> bool:
        """Nothing fixed the executor (n_jobs=1 fixes serial): items may run in the
        calling process (the dry run, and the whole job while it stays serial), and
        the run may move to another executor."""
        return self.executor is None and self.executor_type is None and self.n_jobs != 1


def check_run(func: Any, data: Any, options: RunOptions,
              return_optimization_result: Any = False) -> RunOptions:
    """Check everything execute() was given; return the options with paths made text."""
    o = options
    check_common(func, data, sample_size=o.sample_size,
                 target_chunk_duration=o.target_chunk_duration, n_jobs=o.n_jobs,
                 chunksize=o.chunksize, executor_type=o.executor_type,
                 total_items=o.total_items, min_speedup=o.min_speedup, verbose=o.verbose)
    _flag("return_optimization_result", return_optimization_result)
    _flag("keep_workers", o.keep_workers)
    if o.executor is not None and not isinstance(o.executor, Executor):
        raise TypeError("executor must be a concurrent.futures.Executor (e.g. "
                        "ProcessPoolExecutor, or dask's client.get_executor()), "
                        f"got {type(o.executor).__name__}")
    if o.executor is not None and o.executor_type is not None:
        raise ValueError("pass either executor= or executor_type=, not both")
    if o.n_jobs is not None:
        cap = MAX_EXTERNAL_WORKERS if o.executor is not None else worker_cap()
        if o.n_jobs > cap:
            raise ValueError(f"n_jobs={o.n_jobs} is more workers than amorsize starts on "
                             f"this machine (at most {cap}); pass a smaller n_jobs, or "
                             "leave it out to let amorsize choose")
    if not isinstance(o.progress, (bool, Hook)):
        raise TypeError("progress must be True, False or a Hook object (e.g. "
                        f"ProgressBarHook(...)), got {o.progress!r}")
    _number("progress_interval", o.progress_interval, positive=False, allow_zero=True)
    if o.max_in_flight is not None:
        _int("max_in_flight", o.max_in_flight)
    if o.task_timeout is not None:
        _number("task_timeout", o.task_timeout, positive=True)
    if o.mp_context is not None:
        from multiprocessing.context import BaseContext

        if not isinstance(o.mp_context, BaseContext):
            raise TypeError("mp_context must be a multiprocessing context "
                            "(multiprocessing.get_context(...)), "
                            f"got {type(o.mp_context).__name__}")
    if o.keep_workers and o.executor is not None:
        raise ValueError("keep_workers applies to pools amorsize creates, not to a "
                         "caller's executor (which stays open anyway)")
    if o.max_tasks_per_child is not None:
        _check_recycling(o)
    if o.report is not None:
        if not isinstance(o.report, (str, os.PathLike)):
            raise TypeError(f"report must be a file path, got {type(o.report).__name__}")
        o = replace(o, report=os.fspath(o.report))
    return o


def _check_recycling(o: RunOptions) -> None:
    _int("max_tasks_per_child", o.max_tasks_per_child)
    if o.keep_workers:
        raise ValueError("keep_workers and max_tasks_per_child exclude each other: "
                         "recycled workers are not kept")
    if sys.version_info < (3, 11):
        raise ValueError("max_tasks_per_child needs Python 3.11 or newer")
    if o.executor is not None:
        raise ValueError("max_tasks_per_child applies to pools amorsize creates, not to "
                         "a caller's executor")
    if o.mp_context is not None and o.mp_context.get_start_method() == "fork":
        raise ValueError("max_tasks_per_child needs the 'spawn' or 'forkserver' start "
                         "method; mp_context uses 'fork'")
