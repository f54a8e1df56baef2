"""What this machine offers a parallel job: usable cores, memory, start method, costs.

Limits respected: CPU affinity (`os.sched_getaffinity`), the cgroup CPU quota
(v2 `cpu.max`, v1 `cpu.cfs_quota_us`), the cgroup memory limit (v2 `memory.max`,
v1 `memory.limit_in_bytes`). Costs of a worker process and of a task round-trip are
measured once per process and start method, then cached.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT) -> Optional[float]:
    """Return the cgroup CPU quota in cores, or None when unlimited or unknown."""
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota_us = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_us = _read(root / "cpu" / "cpu.cfs_period_us")
    if quota_us and period_us and int(quota_us) > 0:
        return int(quota_us) / int(period_us)
    return None


def cgroup_memory_available(root: Path = _CGROUP_ROOT) -> Optional[int]:
    """Return bytes left under the cgroup memory limit, or None when unlimited."""
    limit = _read(root / "memory.max")
    usage = _read(root / "memory.current")
    if limit is None:
        limit = _read(root / "memory" / "memory.limit_in_bytes")
        usage = _read(root / "memory" / "memory.usage_in_bytes")
    if not limit or limit == "max" or not usage:
        return None
    limit_bytes = int(limit)
    if limit_bytes >= 1 << 60:  # v1 reports "unlimited" as a huge number
        return None
    return max(0, limit_bytes - int(usage))


def usable_cores() -> int:
    """Return the cores this process may use: affinity and cgroup quota respected."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


@functools.cache
def physical_cores() -> int:
    """Return the number of physical cores (psutil), at least 1."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def available_memory() -> int:
    """Return bytes of memory available to this process (cgroup limit respected)."""
    available = int(psutil.virtual_memory().available)
    limited = cgroup_memory_available()
    return min(available, limited) if limited is not None else available


def start_method() -> str:
    """Return the multiprocessing start method new process pools will use."""
    return multiprocessing.get_start_method(allow_none=False)


@dataclass(frozen=True)
class ProcessCosts:
    """Measured costs of process parallelism on this machine, for one start method.

    - worker_start: seconds to start one worker process and get its first answer.
    - task_roundtrip: seconds to submit one tiny task to a warm pool and get it back.
    - ipc_seconds_per_byte: extra seconds per byte of result sent back to the parent;
      None until a job moved enough data for it to matter (see `process_costs`).
    """

    start_method: str
    worker_start: float
    task_roundtrip: float
    ipc_seconds_per_byte: Optional[float] = None


def _echo(payload: object) -> object:
    return payload


def _payload(size: int) -> bytes:
    return b"x" * size


def _wall_clock(_: object = None) -> float:
    return time.time()


_costs_lock = threading.Lock()
_process_costs: dict[str, ProcessCosts] = {}


# Probe sizes: enough to see the costs, small enough that the first call of a process
# pays about 3 ms for them beyond the start of the workers.
_ROUNDTRIPS = 4
# Per byte, 128 KB looked 2-3x cheaper than 512 KB (1 vs 2.5-3 ns): large results are
# what this figure is for, so it is measured with a large one.
_TRANSFER_BYTES = 512 * 1024
_TRANSFERS = 2


class PoolStart:
    """A process pool whose workers were asked to start, and when (see `started_by`)."""

    def __init__(self, pool: ProcessPoolExecutor, workers: int) -> None:
        self.pool = pool
        self.workers = workers
        self.requested = time.time()
        # The first task makes the pool start its workers (with fork, all of them);
        # its answer is the wall-clock time a worker first ran something.
        self.first_answer = pool.submit(_wall_clock)

    def ready(self) -> bool:
        """Has a worker answered yet (without waiting)?"""
        return self.first_answer.done()

    def worker_start(self) -> float:
        """Seconds one worker takes to start: waits for the first answer. Starting n
        costs about (1 + n) / 2 of one (forked in turn, initialised side by side)."""
        answered = float(self.first_answer.result())
        return max(0.0, answered - self.requested) * 2 / (1 + self.workers)


def measure_process_costs(start: PoolStart, method: str, ipc: bool = True) -> ProcessCosts:
    """Measure the process costs on the pool `start` started (nothing else runs on it
    meanwhile); cache and return them. With `ipc`, the cost per byte through the pipe
    too (about 3 ms more). Figures already cached are kept, not measured again."""
    pool = start.pool
    cached = cached_process_costs(method)
    if cached is None:
        worker_start = start.worker_start()
        roundtrips = []
        for _ in range(_ROUNDTRIPS):
            t0 = time.perf_counter()
            pool.submit(_echo, None).result()
            roundtrips.append(time.perf_counter() - t0)
        task_roundtrip = statistics.median(roundtrips[1:])  # the first is still warming up
        costs = ProcessCosts(method, worker_start, task_roundtrip)
    else:
        start.worker_start()  # wait for the workers, as the measurement below needs them
        costs = cached
    if ipc and costs.ipc_seconds_per_byte is None:
        transfer = math.inf
        for _ in range(_TRANSFERS):
            t0 = time.perf_counter()
            pool.submit(_payload, _TRANSFER_BYTES).result()
            transfer = min(transfer, time.perf_counter() - t0)
        per_byte = max(0.0, transfer - costs.task_roundtrip) / _TRANSFER_BYTES
        costs = dataclasses.replace(costs, ipc_seconds_per_byte=per_byte)
    with _costs_lock:
        kept = _process_costs.get(method)
        if kept is None or (kept.ipc_seconds_per_byte is None
                            and costs.ipc_seconds_per_byte is not None):
            _process_costs[method] = kept = costs
        return kept


def cached_process_costs(method: Optional[str] = None, ipc: bool = False
                         ) -> Optional[ProcessCosts]:
    """Return the process costs measured earlier in this process (with the per-byte
    cost if `ipc`), or None."""
    with _costs_lock:
        cached = _process_costs.get(method or start_method())
    if cached is None or (ipc and cached.ipc_seconds_per_byte is None):
        return None
    return cached


def process_costs(method: Optional[str] = None, ipc: bool = True) -> ProcessCosts:
    """Return the process costs for `method` (with the per-byte cost if `ipc`):
    measured once on a one-worker pool that is shut down at once, then cached."""
    method = method or start_method()
    cached = cached_process_costs(method, ipc)
    if cached is not None:
        return cached
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method))
    try:
        return measure_process_costs(PoolStart(pool, 1), method, ipc)
    finally:
        pool.shutdown(wait=True)  # join the probe worker: no process outlives a call


@dataclass(frozen=True)
class ThreadCosts:
    """Measured costs of a thread pool: start of one thread, one task round-trip."""

    worker_start: float
    task_roundtrip: float


_THREAD_ROUNDTRIPS = 9


@functools.cache
def thread_costs() -> ThreadCosts:
    """Return the measured thread-pool costs (measured once, then cached)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_echo, None).result()
        worker_start = time.perf_counter() - started
        roundtrips = []
        for _ in range(_THREAD_ROUNDTRIPS):
            t0 = time.perf_counter()
            pool.submit(_echo, None).result()
            roundtrips.append(time.perf_counter() - t0)
    roundtrips.sort()
    return ThreadCosts(worker_start, roundtrips[len(roundtrips) // 2])
