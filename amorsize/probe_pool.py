"""The process pool execute() starts while it is still deciding, kept for the run.

Starting worker processes is the largest fixed cost of a parallel run, and the first
execute() in a process must also measure what processes cost on this machine. Doing
those one after the other, on separate pools, pays the start twice and leaves the
second core idle while the dry run computes. So execute() gives the optimizer a
`ProbePool`:

- `start()` starts the pool the run would most likely use (one worker per usable
  core, or the n_jobs the caller fixed) without waiting for it; execute() calls it
  once the first sampled item shows a job that worker processes are likely to run,
  and the rest of the dry run goes on while the workers start (ending early, for
  slow items, once they are `probably_up()`);
- `costs()` returns the cached process costs, or measures what is missing on this
  pool (starting it if it was not started yet);
- `take(n_jobs)` hands the started pool to the run if the decision wants exactly
  such a pool;
- `close()` shuts down whatever was not taken, so no worker outlives execute().
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Optional

from amorsize import system

# How long new workers are assumed to take to start before this process has measured
# it (fork, 2 workers, on the 2-core machine the benchmarks run on: 4-7 ms).
ASSUMED_WORKER_START = 0.005


class ProbePool:
    """A process pool started on demand (early, or to measure costs), offered to the run."""

    def __init__(self, workers: int, mp_context: Optional[BaseContext] = None) -> None:
        self.workers = max(1, workers)
        self.context = mp_context or multiprocessing.get_context()
        self._start: Optional[system.PoolStart] = None
        self._started_at = 0.0
        # Seconds this process spent starting the pool and waiting for its first worker.
        self.start_seconds = 0.0

    @property
    def start_method(self) -> str:
        """The start method of the pool this probe starts."""
        return self.context.get_start_method()

    @property
    def started(self) -> bool:
        """Whether the pool was started (and not yet taken or closed)."""
        return self._start is not None

    def start(self) -> None:
        """Start the pool's workers without waiting for them (once)."""
        if self._start is None:
            self._started_at = time.perf_counter()
            pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)
            self._start = system.PoolStart(pool, self.workers)
            self.start_seconds += time.perf_counter() - self._started_at

    def probably_up(self) -> bool:
        """Whether a started pool's workers have had the time they take to start (the
        measured start if known, else ASSUMED_WORKER_START), or one has answered.

        Does not wait. The answer alone is no sign: while this thread computes, the
        pool's own threads in this process wait up to a GIL switch interval per step.
        """
        if self._start is None:
            return False
        if self._start.ready():
            return True
        cached = system.cached_process_costs(self.start_method)
        one = cached.worker_start if cached is not None else ASSUMED_WORKER_START
        expected = one * (1 + self.workers) / 2
        return time.perf_counter() - self._started_at >= expected

    def costs(self, ipc: bool = True) -> system.ProcessCosts:
        """Return the process costs (with the per-byte cost if `ipc`): cached ones,
        else measured on this pool, started now if it was not yet."""
        cached = system.cached_process_costs(self.start_method, ipc)
        if cached is not None:
            return cached
        self.start()
        assert self._start is not None
        try:
            waited = time.perf_counter()
            self._start.worker_start()  # wait for the first worker, as the run would
            self.start_seconds += time.perf_counter() - waited
            return system.measure_process_costs(self._start, self.start_method, ipc)
        except BaseException:
            self.close()
            raise

    def take(self, n_jobs: int) -> Optional[ProcessPoolExecutor]:
        """Hand over the started pool if it has `n_jobs` workers (the caller then owns
        it); else None."""
        start = self._start
        if start is None or n_jobs != self.workers or getattr(start.pool, "_broken", False):
            return None
        self._start = None
        return start.pool

    def close(self) -> None:
        """Shut down the pool if it was started and not taken."""
        start, self._start = self._start, None
        if start is not None:
            start.pool.shutdown(wait=True, cancel_futures=True)
