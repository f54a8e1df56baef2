"""The pools a run uses, and how they end: started, watched, killed, shut down.

`ManagedPool` wraps a `concurrent.futures.Executor` with what the run needs beyond
the standard interface: which worker process runs which task since when (from the
workers' own start board, so `task_timeout` measures running time and knows which
process to kill), the worker pids (to end them at once after a failure), and
whether it is still healthy (for reuse with keep_workers=True).

Thread pools are `DaemonThreadPool`s: a thread stuck in a hung item cannot be
killed, but it must not hold up the interpreter's exit either, as the standard
ThreadPoolExecutor's threads do (they are joined at exit).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Optional

from amorsize import lifeline

# How many start-board slots per worker: recycled workers (max_tasks_per_child) claim
# the slot of a dead one.
_SLOTS_PER_WORKER = 2


class DaemonThreadPool(Executor):
    """A minimal thread pool whose threads are daemons, started on demand."""

    def __init__(self, max_workers: int, name_prefix: str = "amorsize") -> None:
        self.max_workers = max(1, max_workers)
        self.name_prefix = name_prefix
        self._queue: queue.SimpleQueue[Optional[tuple[Future[Any], Callable[..., Any],
                                                      tuple[Any, ...]]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule `fn(*args)`; start a thread if fewer than max_workers run."""
        if kwargs:
            raise TypeError("DaemonThreadPool.submit takes positional arguments only")
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._queue.put((future, fn, args))
            if len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name_prefix}-{len(self._threads)}",
                    daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
            del job, future, fn, args

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; cancel what is queued if asked; join the threads if `wait`
        (a hung thread is left to run in the background otherwise)."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


class ManagedPool:
    """An executor a run submits to, and how to watch and end it."""

    def __init__(self, executor: Executor, kind: str, workers: int, *, owned: bool,
                 board: Optional[lifeline.StartBoard] = None,
                 start_method: Optional[str] = None) -> None:
        self.executor = executor
        self.kind = kind  # "process", "thread" or "external"
        self.workers = workers
        self.owned = owned
        self.board = board
        self.start_method = start_method
        self.created_at = time.perf_counter()
        self.created_wall = time.time()
        self.broken = False

    def task_started(self, key: int) -> Optional[tuple[Optional[int], float]]:
        """(worker pid or None, monotonic start) of task `key`, once a worker began it."""
        if self.board is not None:
            return self.board.started(key)
        if self.kind == "thread":
            started = lifeline.thread_task_started(key)
            return None if started is None else (None, started)
        return None

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes that started (process pools)."""
        return self.board.pids() if self.board is not None else []

    def healthy(self) -> bool:
        """Not broken, and every worker process that started is alive."""
        if self.broken:
            return False
        return all(lifeline.alive(pid) for pid in self.worker_pids())

    def kill_worker(self, pid: int) -> None:
        """End one worker process now (a hung task)."""
        self.broken = True
        _kill(pid)

    def close(self, graceful: bool) -> None:
        """Shut the pool down. After a failure or interrupt, cancel what is queued and
        end the worker processes at once; a caller's executor only loses our tasks."""
        if not self.owned:
            return
        if graceful:
            self.executor.shutdown(wait=True)
            return
        self.broken = True
        if self.kind == "process":
            # Kill the workers that started, and let the pool find itself broken
            # before it is shut down: it then terminates every other worker too (one
            # still starting, one stuck on a queue lock a killed worker held). Shut
            # down first, it would wait for those forever.
            killed = self.worker_pids()
            for pid in killed:
                _kill(pid)
            if killed:
                _wait_until_broken(self.executor)
            self.executor.shutdown(wait=True, cancel_futures=True)
        else:
            self.executor.shutdown(wait=False, cancel_futures=True)


# How long a process pool may take to notice a killed worker.
_BROKEN_WAIT_SECONDS = 10.0


def _noop() -> None:
    """A task that does nothing (to ask a pool whether it is broken)."""


def _wait_until_broken(executor: Executor) -> None:
    """Wait until a process pool whose workers were killed says it is broken, at most
    _BROKEN_WAIT_SECONDS: submit a no-op and wait for it (a broken pool refuses it or
    fails it with BrokenProcessPool; a surviving worker may run it: ask again).

    The probe is never cancelled: Python 3.11's pool, once broken, sets an exception
    on every pending future, and a cancelled one makes its manager thread die before
    it has ended the workers.
    """
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    deadline = time.monotonic() + _BROKEN_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            probe = executor.submit(_noop)
            probe.result(timeout=max(0.0, deadline - time.monotonic()))
        except (BrokenProcessPool, RuntimeError, FutureTimeout):
            return  # broken, already shut down, or given up
        except Exception:
            return
        time.sleep(0.01)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)


def process_pool(workers: int, mp_context: Any = None,
                 max_tasks_per_child: Optional[int] = None) -> ManagedPool:
    """A process pool whose workers die with this process, know their core share for
    nested runs, and note their tasks' start times."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from amorsize import system

    context = mp_context or multiprocessing.get_context()
    if max_tasks_per_child is not None and mp_context is None:
        context = multiprocessing.get_context("spawn")  # recycling needs spawn/forkserver
    board = lifeline.StartBoard(context, _SLOTS_PER_WORKER * workers)
    lifeline.find_prctl()  # before the fork: forked workers inherit it
    cores = max(1, system.usable_cores() // workers)
    from_main = threading.current_thread() is threading.main_thread()
    options: dict[str, Any] = {}
    if max_tasks_per_child is not None:  # keyword exists from Python 3.11 on only
        options["max_tasks_per_child"] = max_tasks_per_child
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=lifeline.init_worker,
        initargs=(os.getpid(), from_main, cores, board), **options)
    return ManagedPool(executor, "process", workers, owned=True, board=board,
                       start_method=context.get_start_method())


def thread_pool(workers: int) -> ManagedPool:
    """A pool of daemon threads."""
    return ManagedPool(DaemonThreadPool(workers), "thread", workers, owned=True)


def executor_kind(executor: Executor) -> str:
    """"process", "thread", or "external" (any other Executor, e.g. dask's)."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if isinstance(executor, ProcessPoolExecutor):
        return "process"
    if isinstance(executor, (ThreadPoolExecutor, DaemonThreadPool)):
        return "thread"
    return "external"


def external_pool(executor: Executor, workers: int) -> ManagedPool:
    """The caller's executor (a ProcessPoolExecutor, a ThreadPoolExecutor, dask's
    client.get_executor(), ...): used as it is, never shut down here."""
    return ManagedPool(executor, executor_kind(executor), workers, owned=False)
