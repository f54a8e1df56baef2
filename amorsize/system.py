"""What this machine offers a parallel job: usable cores, memory, start method, costs.

Limits respected: CPU affinity (`os.sched_getaffinity`), the cgroup CPU quota
(v2 `cpu.max`, v1 `cpu.cfs_quota_us`), the cgroup memory limit (v2 `memory.max`,
v1 `memory.limit_in_bytes`), and inside an amorsize worker process its share of the
cores (a nested run must not oversubscribe them).

What a worker process costs to start is measured on every pool a run starts and
kept for the process (per start method); until then a figure measured on the
benchmark machine is assumed.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
from pathlib import Path
from typing import Optional

from amorsize import lifeline
from amorsize.costmodel import MachineCosts

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
    budget = lifeline.core_budget()
    if budget is not None:
        cores = min(cores, budget)
    return max(1, cores)


@functools.cache
def physical_cores() -> int:
    """Return the number of physical cores (psutil), at least 1."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _meminfo_available() -> Optional[int]:
    """MemAvailable from Linux's /proc/meminfo (cheaper than importing psutil)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Return bytes of memory available to this process (cgroup limit respected)."""
    available = _meminfo_available()
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    limited = cgroup_memory_available()
    return min(available, limited) if limited is not None else available


def start_method() -> str:
    """Return the multiprocessing start method new process pools will use."""
    import multiprocessing

    return multiprocessing.get_start_method(allow_none=False)


def gil_enabled() -> bool:
    """Whether threads run Python code one at a time (False on a free-threaded build
    running without the GIL)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13+
    return bool(is_enabled()) if is_enabled is not None else True


# Seconds for one worker process to start and take its first task, per start method,
# until measured here: fork and forkserver measured on the 2-core benchmark machine
# (Python 3.11); spawn imports the interpreter and the job's module afresh.
ASSUMED_PROCESS_START = {"fork": 0.006, "forkserver": 0.02, "spawn": 0.1}
# CPU one task costs the calling process and the worker beyond its items (pickling
# the call, the pipe, the bookkeeping): a process pool about 0.3 ms, a thread pool
# about 50 us, on the benchmark machine.
PROCESS_TASK_SECONDS = 0.0003
THREAD_TASK_SECONDS = 0.00005
THREAD_START_SECONDS = 0.0002
# Seconds per byte through a process pool's pipe (1-3 ns measured on the benchmark
# machine; the worker-measured pickling is counted separately).
IPC_SECONDS_PER_BYTE = 2e-9

_lock = threading.Lock()
_measured_start: dict[str, float] = {}


def note_process_start(method: str, seconds: float) -> None:
    """Keep what starting one worker process took (the smallest seen: a busy machine
    only ever makes it look slower)."""
    if seconds <= 0 or not math.isfinite(seconds):
        return
    with _lock:
        known = _measured_start.get(method)
        _measured_start[method] = seconds if known is None else min(known, seconds)


def process_start_seconds(method: Optional[str] = None) -> float:
    """Seconds one worker process takes to start: measured here, else assumed."""
    method = method or start_method()
    with _lock:
        measured = _measured_start.get(method)
    if measured is not None:
        return measured
    return ASSUMED_PROCESS_START.get(method, ASSUMED_PROCESS_START["spawn"])


def machine_costs(method: Optional[str] = None) -> MachineCosts:
    """This machine's figures for the cost model."""
    return MachineCosts(
        cores=usable_cores(),
        available_memory=available_memory(),
        process_start=process_start_seconds(method),
        process_task=PROCESS_TASK_SECONDS,
        ipc_seconds_per_byte=IPC_SECONDS_PER_BYTE,
        thread_start=THREAD_START_SECONDS,
        thread_task=THREAD_TASK_SECONDS,
        gil=gil_enabled(),
    )
