"""execute(): optimize, run the chunks, return results in input order.

Runs through `concurrent.futures` (a process pool, a thread pool, in-process for
serial, or any Executor the caller owns). The input is read lazily and at most
`max_in_flight` tasks are submitted but not yet handed back, so memory stays bounded
for unbounded generators (use `execute_iter` to stream the results too).

Failures: the function raising re-raises the same exception type with the worker's
traceback as its cause; a worker dying raises `WorkerDiedError` within seconds;
KeyboardInterrupt terminates the workers. After every outcome no worker process of a
pool this module created is left alive.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any, Optional, Union

from amorsize import system, warm_pool
from amorsize.hooks import HookManager, HooksArgument, as_hook_manager
from amorsize.names import STATUS_CANCELLED, STATUS_ERROR, STATUS_SUCCESS, function_label
from amorsize.optimizer import (
    IO_BOUND_CPU_RATIO,
    IPC_SECONDS_PER_BYTE_BOUND,
    WORKER_START_KEPT,
    OptimizationResult,
    optimize_with_sample,
    processes_look_likely,
    validate_common,
)
from amorsize.probe_pool import ProbePool
from amorsize.publisher import RunPublisher
from amorsize.sampling import ItemMeasurement, Sample, known_length
from amorsize.worker import ChunkReport, FunctionPayload, _worker_identity, run_chunk


class WorkerDiedError(BrokenProcessPool):
    """A worker process ended without returning its task (killed, crashed, os._exit)."""


class ExecutionCancelled(Exception):
    """The consumer of execute_iter() stopped reading before the end."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised inside a worker, kept as text."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return "\n\n" + self.traceback_text


class _TaskFailed(Exception):
    def __init__(self, report: ChunkReport) -> None:
        super().__init__(report.error)
        self.report = report


def _executor_kind(executor: Executor) -> str:
    if isinstance(executor, ProcessPoolExecutor):
        return "process"
    if isinstance(executor, ThreadPoolExecutor):
        return "thread"
    return "external"


def executor_worker_count(executor: Executor) -> Optional[int]:
    """Ask a caller's executor how many workers it has, where it can tell."""
    count = getattr(executor, "_max_workers", None)
    if isinstance(count, int) and count > 0:
        return count
    client = getattr(executor, "_client", None)  # dask.distributed ClientExecutor
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:
            return None
    return None


# The dry run may end early only after an item at least this slow.
EARLY_STOP_ITEM_SECONDS = 0.001

# execute_iter() on the in-process path: most results one chunk holds at once (the
# optimizer's serial chunks hold about a second of work, millions of cheap items).
STREAMING_SERIAL_CHUNK = 65_536


class _Job:
    """One execute() call: validated arguments, then a generator of results."""

    def __init__(
        self,
        func: Callable[[Any], Any],
        data: Iterable[Any],
        hooks: HooksArgument,
        *,
        n_jobs: Optional[int],
        chunksize: Optional[int],
        executor: Optional[Executor],
        executor_type: Optional[str],
        sample_size: int,
        target_chunk_duration: float,
        total_items: Optional[int],
        progress: Union[bool, Any],
        progress_interval: float,
        max_in_flight: Optional[int],
        min_speedup: float,
        max_tasks_per_child: Optional[int],
        mp_context: Optional[BaseContext],
        keep_workers: bool = False,
        streaming: bool = False,
    ) -> None:
        validate_common(
            func, data, sample_size, target_chunk_duration, n_jobs, chunksize, executor_type,
            total_items, min_speedup,
        )
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                "executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor, "
                f"or dask's client.get_executor()), got {type(executor).__name__}"
            )
        if executor is not None and executor_type is not None:
            raise ValueError("pass either executor= or executor_type=, not both")
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        if not isinstance(progress_interval, (int, float)) or progress_interval < 0:
            raise ValueError(f"progress_interval must be >= 0 seconds, got {progress_interval!r}")
        if mp_context is not None and not isinstance(mp_context, BaseContext):
            raise TypeError("mp_context must be a multiprocessing context "
                            f"(multiprocessing.get_context(...)), got {type(mp_context).__name__}")
        if not isinstance(keep_workers, bool):
            raise TypeError(f"keep_workers must be True or False, got {keep_workers!r}")
        if keep_workers and executor is not None:
            raise ValueError("keep_workers applies to pools amorsize creates, not to a "
                             "caller's executor (which stays open anyway)")
        if keep_workers and max_tasks_per_child is not None:
            raise ValueError("keep_workers and max_tasks_per_child exclude each other: "
                             "recycled workers are not kept")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int) or max_tasks_per_child < 1:
                raise ValueError(
                    f"max_tasks_per_child must be an int >= 1, got {max_tasks_per_child!r}"
                )
            if sys.version_info < (3, 11):
                raise ValueError("max_tasks_per_child needs Python 3.11 or newer")
            if executor is not None:
                raise ValueError("max_tasks_per_child applies to pools amorsize creates, "
                                 "not to a caller's executor")
            if mp_context is not None and mp_context.get_start_method() == "fork":
                raise ValueError("max_tasks_per_child needs the 'spawn' or 'forkserver' "
                                 "start method; mp_context uses 'fork'")
        self.func = func
        self.data = data
        self.manager = as_hook_manager(hooks)
        self.progress_hook = None
        if progress:
            from amorsize.integrations.progress import ProgressBarHook

            self.progress_hook = progress if not isinstance(progress, bool) else ProgressBarHook()
            if self.manager is None:
                self.manager = HookManager()
        self.n_jobs = n_jobs
        self.chunksize = chunksize
        self.executor = executor
        self.executor_type = executor_type
        self.sample_size = sample_size
        self.target_chunk_duration = target_chunk_duration
        self.total_items = total_items
        self.progress_interval = progress_interval
        self.max_in_flight = max_in_flight
        self.min_speedup = min_speedup
        self.max_tasks_per_child = max_tasks_per_child
        self.mp_context = mp_context
        self.keep_workers = keep_workers
        self.streaming = streaming
        self.optimization: Optional[OptimizationResult] = None
        self.probe: Optional[ProbePool] = None

    # ------------------------------------------------------------------ decide

    def _optimize(self) -> tuple[OptimizationResult, Optional[Sample], Iterator[Any]]:
        n_jobs, kind, warnings = self.n_jobs, self.executor_type, []
        if self.executor is not None:
            kind = _executor_kind(self.executor)
            if n_jobs is None:
                n_jobs = executor_worker_count(self.executor)
                if n_jobs is None:
                    n_jobs = system.usable_cores()
                    warnings.append(
                        f"could not ask the executor how many workers it has; assumed "
                        f"{n_jobs} (pass n_jobs=)"
                    )
        fixed_kind = kind if kind is not None else ("serial" if n_jobs == 1 else None)
        if fixed_kind is not None and self.chunksize is not None and (
            n_jobs is not None or fixed_kind == "serial"
        ):
            total = self.total_items if self.total_items is not None else known_length(self.data)
            result = OptimizationResult(
                n_jobs=1 if fixed_kind == "serial" else (n_jobs or 1),
                chunksize=self.chunksize,
                executor_type=fixed_kind,
                estimated_speedup=math.nan,
                reason="n_jobs, chunksize and the executor were all fixed by the caller; "
                "nothing was sampled.",
                warnings=warnings,
                total_items=total,
            )
            return result, None, iter(self.data)
        model_kind = "process" if kind == "external" else kind
        result, sample = optimize_with_sample(
            self.func,
            self.data,
            sample_size=self.sample_size,
            target_chunk_duration=self.target_chunk_duration,
            n_jobs=n_jobs,
            chunksize=self.chunksize,
            executor_type=model_kind,
            total_items=self.total_items,
            min_speedup=self.min_speedup,
            process_cost_source=self.probe.costs if self.probe is not None else None,
            enough=self._enough_sampled,
        )
        if kind == "external":
            result.executor_type = "external"
        result.warnings[:0] = warnings
        return result, sample, sample.rest

    # ------------------------------------------------------------------ run

    def run(self) -> Generator[list[Any], None, None]:
        """Optimize, then yield the results chunk by chunk in input order, firing the
        events."""
        started = time.perf_counter()
        wall_started = time.time()
        if self.progress_hook is not None and self.manager is not None:
            # Attached only while the run runs: an execute_iter() never iterated, or a
            # finished run, leaves the caller's manager as it was.
            self.manager.add(self.progress_hook)
        if self.executor is None and self.max_tasks_per_child is None and (
            self.executor_type == "process" or (self.executor_type is None and self.n_jobs != 1)
        ) and not (self.keep_workers and warm_pool.has_idle()):
            # (A kept warm pool will serve this run if it suits: start no other early.)
            self.probe = ProbePool(self.n_jobs or system.usable_cores(), self.mp_context)
        try:
            optimization, sample, rest = self._optimize()
        except BaseException as failure:
            # The input raised while being sampled, the user interrupted the sample,
            # or the decision refused the arguments: still one run, reported as such.
            try:
                self._close_probe()
                self._report_failed_optimization(failure, started, wall_started)
            finally:
                self._detach_progress()
            raise
        self.optimization = optimization
        publisher = self._publisher(optimization, started, wall_started)
        publisher.pre_execute()
        status = STATUS_ERROR
        produced = 0
        try:
            first_chunk = 0
            if sample is not None and (sample.items or sample.error is not None):
                report = _sample_report(sample)
                publisher.chunk(report, sampled=True)
                if report.error is not None:
                    raise _TaskFailed(report)
                first_chunk = 1
                produced += len(sample.results)
                yield sample.results
            done = len(sample.items) if sample is not None else 0
            for results in self._run_rest(optimization, rest, first_chunk, publisher, done):
                produced += len(results)
                yield results
            status = STATUS_SUCCESS
        except _TaskFailed as failed:
            report = failed.report
            error = report.error or RuntimeError("a task failed without an exception")
            publisher.error(error, report.error_traceback, status=STATUS_ERROR, report=report)
            if report.error_traceback and report.pid != os.getpid():
                # Raised in another process: its traceback came back as text only.
                error.__cause__ = WorkerTraceback(report.error_traceback)
            raise error from error.__cause__
        except GeneratorExit:
            status = STATUS_CANCELLED
            publisher.error(ExecutionCancelled("the consumer stopped reading results"), None,
                            status=STATUS_CANCELLED)
            raise
        except KeyboardInterrupt as interrupt:
            status = STATUS_CANCELLED
            publisher.error(interrupt, None, status=STATUS_CANCELLED)
            raise
        except BaseException as error:
            publisher.error(error, traceback.format_exc(), status=STATUS_ERROR)
            raise
        finally:
            try:
                self._close_probe()
                publisher.finish(status, produced)
            finally:
                self._detach_progress()

    def _enough_sampled(self, measurements: list[ItemMeasurement], total: Optional[int]) -> bool:
        """Asked during the dry run after each item: may it stop here?

        After the first item: if it shows a job that worker processes will likely run,
        start them now. Then slow items (>= EARLY_STOP_ITEM_SECONDS) end the sample,
        once one besides the first was timed untraced, when the started workers are
        probably up (sampling on would keep them waiting) or when the items wait
        rather than compute (threads will run them; sampling on waits serially).
        """
        if self.total_items is not None:
            total = self.total_items
        probe = self.probe
        if len(measurements) == 1:
            if probe is not None and (
                self.executor_type == "process"
                or self._processes_look_likely(probe, measurements[0], total)
            ):
                probe.start()
            return False
        timed = [m for m in measurements[1:] if not m.traced]
        if not timed or measurements[-1].wall_seconds < EARLY_STOP_ITEM_SECONDS:
            return False
        if probe is not None and probe.started:
            return probe.probably_up()
        waiting = sum(m.cpu_seconds for m in timed) <= IO_BOUND_CPU_RATIO * sum(
            m.wall_seconds for m in timed)
        return waiting and self.executor_type in (None, "thread")

    def _processes_look_likely(self, probe: ProbePool, first: ItemMeasurement,
                               total: Optional[int]) -> bool:
        """processes_look_likely(), with this process's measured cost per byte if known."""
        cached = system.cached_process_costs(probe.start_method, ipc=True)
        per_byte = cached.ipc_seconds_per_byte if cached is not None else None
        return processes_look_likely(
            first, total, system.usable_cores(), self.min_speedup,
            per_byte if per_byte is not None else IPC_SECONDS_PER_BYTE_BOUND,
        )

    def _close_probe(self) -> None:
        """Shut down the probe's pool if the run did not take it."""
        if self.probe is not None:
            self.probe.close()

    def _take_probe_pool(self, n_jobs: int) -> Optional[ProcessPoolExecutor]:
        """The pool started while deciding, if it has n_jobs workers. The time spent
        starting it, counted in the optimization time, is noted in the figures: the
        run would otherwise have spent it starting its own."""
        pool = self.probe.take(n_jobs) if self.probe is not None else None
        if pool is not None and self.probe is not None and self.optimization is not None:
            self.optimization.figures[WORKER_START_KEPT] = self.probe.start_seconds
        return pool

    def _detach_progress(self) -> None:
        """Take the progress bar this run added off the (maybe caller's) manager."""
        if self.progress_hook is not None and self.manager is not None:
            self.manager.remove(self.progress_hook)

    def _publisher(
        self, optimization: OptimizationResult, started: float, wall_started: float
    ) -> RunPublisher:
        return RunPublisher(
            self.manager,
            function=function_label(self.func),
            execution_id=uuid.uuid4().hex,
            started=started,
            wall_started=wall_started,
            optimization=optimization,
            progress_interval=self.progress_interval,
        )

    def _report_failed_optimization(
        self, failure: BaseException, started: float, wall_started: float
    ) -> None:
        """PRE_EXECUTE, ON_ERROR and POST_EXECUTE for a run that failed while deciding."""
        if self.manager is None:
            return
        interrupted = isinstance(failure, KeyboardInterrupt)
        status = STATUS_CANCELLED if interrupted else STATUS_ERROR
        optimization = OptimizationResult(
            n_jobs=self.n_jobs or 1,
            chunksize=self.chunksize or 1,
            executor_type=self.executor_type or "serial",
            estimated_speedup=math.nan,
            reason=f"The run failed while deciding how to run: {type(failure).__name__}.",
            total_items=self.total_items
            if self.total_items is not None
            else known_length(self.data),
            optimization_seconds=time.perf_counter() - started,
        )
        self.optimization = optimization
        publisher = self._publisher(optimization, started, wall_started)
        publisher.pre_execute()
        publisher.error(failure, None if interrupted else traceback.format_exc(), status=status)
        publisher.finish(status, 0)

    def _run_rest(
        self,
        optimization: OptimizationResult,
        rest: Iterator[Any],
        first_chunk: int,
        publisher: RunPublisher,
        done: int,
    ) -> Iterator[list[Any]]:
        """Run the items after the `done` sampled ones; yield each chunk's results."""
        if optimization.executor_type == "serial":
            # In-process: each chunk straight from the input, no list of items: a
            # slice of a list, tuple or range (iterated faster than an islice), else
            # an islice of the iterator.
            size = optimization.chunksize
            if self.streaming and self.chunksize is None:
                size = min(size, STREAMING_SERIAL_CHUNK)  # bound what one chunk holds
            data = self.data
            sliceable = isinstance(data, (list, tuple, range))
            for chunk_id in itertools.count(first_chunk):
                if sliceable:
                    start = done + (chunk_id - first_chunk) * size
                    items: Iterable[Any] = data[start:start + size]  # type: ignore[index]
                else:
                    items = itertools.islice(rest, size)
                report = run_chunk(self.func, chunk_id, items, portable_errors=False)
                if report.item_count == 0:
                    return
                publisher.chunk(report)
                if report.error is not None:
                    raise _TaskFailed(report)
                yield report.results
                if report.item_count < size:
                    return  # the input ran out inside this chunk
        chunks = _chunked(rest, optimization.chunksize, first_chunk)
        if self.executor is not None:
            yield from _run_on_pool(self.executor, False, self._task_function(optimization),
                                    chunks, self._window(optimization), publisher)
            return
        task = self._task_function(optimization)
        if self.keep_workers and optimization.executor_type == "process" and (
            self.max_tasks_per_child is None
        ):
            yield from self._run_on_warm_pool(optimization, task, chunks, publisher)
            return
        pool = self._make_pool(optimization)
        yield from _run_on_pool(pool, True, task, chunks, self._window(optimization), publisher)

    def _run_on_warm_pool(
        self,
        optimization: OptimizationResult,
        task: Any,
        chunks: Iterator[tuple[int, list[Any]]],
        publisher: RunPublisher,
    ) -> Iterator[list[Any]]:
        """keep_workers=True: take the kept pool if it suits, hand it back after success."""
        method = (self.mp_context or multiprocessing.get_context()).get_start_method()
        n_jobs = optimization.n_jobs
        warm = warm_pool.acquire(task, n_jobs, method)
        started = None if warm is not None else self._take_probe_pool(n_jobs)
        if started is not None:
            warm_pool.remember(started, task)  # its workers forked during this call
        pool = warm or started or ProcessPoolExecutor(max_workers=n_jobs,
                                                      mp_context=self.mp_context)
        yield from _run_on_pool(
            pool, True, task, chunks, self._window(optimization), publisher,
            on_first_submit=None if warm is not None or started is not None else (
                lambda: warm_pool.remember(pool, task)),
            release=lambda: warm_pool.release(pool, n_jobs, method),
        )

    def _task_function(self, optimization: OptimizationResult) -> Any:
        if optimization.use_cloudpickle:
            return FunctionPayload(self.func)
        return self.func

    def _window(self, optimization: OptimizationResult) -> int:
        return self.max_in_flight or max(4, 4 * optimization.n_jobs)

    def _make_pool(self, optimization: OptimizationResult) -> Executor:
        if optimization.executor_type == "thread":
            return ThreadPoolExecutor(max_workers=optimization.n_jobs,
                                      thread_name_prefix="amorsize")
        if self.max_tasks_per_child is not None:
            context = self.mp_context or multiprocessing.get_context("spawn")
            # Passed through a dict: the keyword exists from Python 3.11 on only.
            recycling: dict[str, Any] = {"max_tasks_per_child": self.max_tasks_per_child}
            return ProcessPoolExecutor(
                max_workers=optimization.n_jobs, mp_context=context, **recycling
            )
        started = self._take_probe_pool(optimization.n_jobs)
        if started is not None:
            return started
        return ProcessPoolExecutor(max_workers=optimization.n_jobs, mp_context=self.mp_context)


def _sample_report(sample: Sample) -> ChunkReport:
    """The sampled items ran in this process during optimization: report them as chunk 0."""
    return ChunkReport(
        chunk_id=0,
        item_count=len(sample.results) + (1 if sample.error is not None else 0),
        results=sample.results,
        wall_start=sample.wall_start,
        wall_end=sample.wall_end,
        duration=sample.compute_seconds,
        pid=sample.pid,
        worker_key=_worker_identity(),
        worker_started_at=sample.wall_start,
        error=sample.error,
        error_traceback=sample.error_traceback,
    )


def _chunked(items: Iterator[Any], size: int, first_id: int) -> Iterator[tuple[int, list[Any]]]:
    for chunk_id in itertools.count(first_id):
        chunk = list(itertools.islice(items, size))
        if not chunk:
            return
        yield chunk_id, chunk


def _run_on_pool(
    pool: Executor,
    owned: bool,
    func: Any,
    chunks: Iterator[tuple[int, list[Any]]],
    window: int,
    publisher: RunPublisher,
    on_first_submit: Optional[Callable[[], None]] = None,
    release: Optional[Callable[[], bool]] = None,
) -> Iterator[list[Any]]:
    """Submit chunks (at most `window` not yet handed back); yield their results in order.

    `on_first_submit` runs once the first task is submitted (the workers exist);
    `release`, after a run that ended normally, may keep the pool (returns True) instead
    of it being shut down.
    """
    # Threads share the parent's memory: keep the original exception object there.
    portable = not isinstance(pool, ThreadPoolExecutor)
    pending: dict[Future[ChunkReport], int] = {}
    finished: dict[int, list[Any]] = {}
    next_id: Optional[int] = None
    exhausted = False
    graceful = False
    try:
        while True:
            while not exhausted and len(pending) + len(finished) < window:
                try:
                    chunk_id, items = next(chunks)
                except StopIteration:
                    exhausted = True
                    break
                if next_id is None:
                    next_id = chunk_id
                pending[pool.submit(run_chunk, func, chunk_id, items, portable)] = chunk_id
                if on_first_submit is not None:
                    on_first_submit()
                    on_first_submit = None
            if not pending and not finished:
                break
            if pending and (next_id not in finished):
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    del pending[future]
                    report = _report_of(future)
                    publisher.chunk(report)
                    if report.error is not None:
                        raise _TaskFailed(report)
                    finished[report.chunk_id] = report.results
            while next_id in finished:
                results = finished.pop(next_id)
                next_id += 1
                yield results
        graceful = True
    finally:
        if not (graceful and release is not None and release()):
            _close_pool(pool, owned, list(pending), graceful)


def _report_of(future: Future[ChunkReport]) -> ChunkReport:
    try:
        return future.result()
    except BrokenProcessPool as broken:
        raise WorkerDiedError(
            "a worker process died without returning its task (killed by a signal, "
            "crashed, ran out of memory, or called os._exit); the run was stopped and "
            "the remaining workers shut down"
        ) from broken


def _close_pool(pool: Executor, owned: bool, pending: list[Future[Any]], graceful: bool) -> None:
    """Shut a pool down; on failure cancel what is queued and end the workers now."""
    if not owned:
        for future in pending:
            future.cancel()
        return
    if graceful:
        pool.shutdown(wait=True)
        return
    if isinstance(pool, ProcessPoolExecutor):
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        pool.shutdown(wait=True)
    else:
        interrupted = isinstance(sys.exc_info()[1], (KeyboardInterrupt, GeneratorExit))
        pool.shutdown(wait=not interrupted, cancel_futures=True)


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
    progress: Union[bool, Any] = False,
    progress_interval: float = 0.5,
    max_in_flight: Optional[int] = None,
    min_speedup: float = 1.1,
    max_tasks_per_child: Optional[int] = None,
    mp_context: Optional[BaseContext] = None,
    keep_workers: bool = False,
) -> Any:
    """Run `func` over every item of `data` in parallel where it pays; return the
    results in input order (and the OptimizationResult if asked).

    n_jobs, chunksize, executor or executor_type fix that part of the decision; the
    rest is optimized from a dry run on up to `sample_size` items (slow items stop it
    sooner, once worker processes started for the job are up or the items are seen
    to wait). `hooks` is a HookManager, a Hook object or a list of them.
    `progress=True` shows a tqdm progress bar (extra `amorsize[progress]`).
    `keep_workers=True` keeps this run's process pool warm (30 s idle) for the next
    execute() of the same, unchanged function; `shutdown_workers()` ends it sooner.
    Without it, no worker process outlives the call.
    """
    job = _Job(
        func, data, hooks, n_jobs=n_jobs, chunksize=chunksize, executor=executor,
        executor_type=executor_type, sample_size=sample_size,
        target_chunk_duration=target_chunk_duration, total_items=total_items,
        progress=progress, progress_interval=progress_interval,
        max_in_flight=max_in_flight, min_speedup=min_speedup,
        max_tasks_per_child=max_tasks_per_child, mp_context=mp_context,
        keep_workers=keep_workers,
    )
    results = _concatenated(list(job.run()))
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
    progress: Union[bool, Any] = False,
    progress_interval: float = 0.5,
    max_in_flight: Optional[int] = None,
    min_speedup: float = 1.1,
    max_tasks_per_child: Optional[int] = None,
    mp_context: Optional[BaseContext] = None,
    keep_workers: bool = False,
) -> Iterator[Any]:
    """Like execute(), but yield results in input order as they arrive.

    Memory stays bounded for unbounded inputs: at most `max_in_flight` chunks are
    submitted but not yet yielded. Arguments are validated now; the work starts at
    the first next(). Closing the iterator early cancels the run.
    """
    job = _Job(
        func, data, hooks, n_jobs=n_jobs, chunksize=chunksize, executor=executor,
        executor_type=executor_type, sample_size=sample_size,
        target_chunk_duration=target_chunk_duration, total_items=total_items,
        progress=progress, progress_interval=progress_interval,
        max_in_flight=max_in_flight, min_speedup=min_speedup,
        max_tasks_per_child=max_tasks_per_child, mp_context=mp_context,
        keep_workers=keep_workers, streaming=True,
    )
    return _flatten(job.run())


def shutdown_workers() -> None:
    """End the worker processes a keep_workers=True run kept warm, if any."""
    warm_pool.shutdown_idle()


def _concatenated(chunks: list[list[Any]]) -> list[Any]:
    """Join the chunks' result lists in order, reusing the largest instead of copying it."""
    if not chunks:
        return []
    largest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
    results = chunks[largest]
    results[0:0] = [r for chunk in chunks[:largest] for r in chunk]
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
