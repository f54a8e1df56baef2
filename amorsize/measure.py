"""The clocks a worker measures itself with: CPU time and run-queue wait of one thread.

Why the run-queue wait: CPU time / wall time alone cannot tell a function that waits
(I/O, sleep) from one that was runnable but not running because the machine was busy
(other processes, the pool's own start, a stalled vCPU). Linux counts the second as
run delay in /proc/thread-self/schedstat; subtracting it, a CPU-bound function reads
as CPU-bound on a busy machine too. Elsewhere the run delay is unknown and counted as
0 (`run_delay_known()` is False).

Thread-level on purpose: a thread-pool worker's process time includes every other
thread, and so does the calling process's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

_SCHEDSTAT = "/proc/thread-self/schedstat"


class _SchedstatFile:
    """An open /proc/thread-self/schedstat of one thread (closed when dropped)."""

    __slots__ = ("fd", "pid")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.fd = os.open(_SCHEDSTAT, os.O_RDONLY)

    def run_delay(self) -> float:
        # Field 2: nanoseconds runnable but waiting for a CPU. (Field 1, time on the
        # CPU, lags up to a scheduler tick for the running thread: thread_time()
        # is exact.)
        return int(os.pread(self.fd, 96, 0).split()[1]) * 1e-9

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _schedstat_works() -> bool:
    try:
        _SchedstatFile().run_delay()
    except (OSError, ValueError, IndexError):
        return False
    return True


_local = threading.local()
_known: list[bool] = []  # filled on first use: no file is opened at import


def run_delay_known() -> bool:
    """Whether this platform tells the run-queue wait (Linux schedstat)."""
    if not _known:
        _known.append(_schedstat_works())
    return _known[0]


def thread_clock() -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) of the calling thread so far.

    About 1 us with the file held open per thread (a forked child reopens its own).
    Without schedstat the wait is 0.
    """
    if not run_delay_known():
        return time.thread_time(), 0.0
    handle: _SchedstatFile | None = getattr(_local, "schedstat", None)
    if handle is None or handle.pid != os.getpid():
        handle = _SchedstatFile()
        _local.schedstat = handle
    return time.thread_time(), handle.run_delay()


def could_run(cpu_seconds: float, wall_seconds: float, run_delay_seconds: float) -> float:
    """Seconds the thread could run: wall time less run-queue wait, at least the CPU
    time it did run and at most the wall time. (The wait is read just outside the
    timed span: for a tiny span on a busy machine it can exceed it.)"""
    return min(wall_seconds, max(wall_seconds - run_delay_seconds, cpu_seconds, 0.0))


def cpu_share(cpu_seconds: float, wall_seconds: float, run_delay_seconds: float) -> float:
    """Share of the time the function could run that it spent computing, 0 to 1.

    Time spent runnable but not running (run delay) is left out: a busy machine does
    not make a computing function look like a waiting one.
    """
    runnable = could_run(cpu_seconds, wall_seconds, run_delay_seconds)
    if runnable <= 0 or cpu_seconds <= 0:
        return 1.0 if cpu_seconds > 0 else 0.0
    return min(1.0, cpu_seconds / runnable)
