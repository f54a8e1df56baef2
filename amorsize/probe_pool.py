"""The process pool execute() starts while it is still deciding, kept for the run.

Starting worker processes is the largest fixed cost of a parallel run, and the first
execute() in a process must also measure what processes cost on this machine. Doing
those one after the other, on separate pools, pays the start twice and leaves the
second core idle while the dry run computes. So execute() gives the optimizer a
`ProbePool`:

- `start()` starts the pool the run would most likely use (one worker per usable
  core, or the n_jobs the caller fixed) without waiting for it; execute() calls it
  once the first sampled item shows a job that worker processes are likely to run,
  and the rest of the dry run goes on while the workers start;
- `costs()` returns the cached process costs, or measures them on this pool
  (starting it if it was not started yet);
- `take(n_jobs)` hands the started pool to the run if the decision wants exactly
  such a pool;
- `close()` shuts down whatever was not taken, so no worker outlives execute().
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Optional

from amorsize import system


class ProbePool:
    """A process pool started on demand (early, or to measure costs), offered to the run."""

    def __init__(self, workers: int, mp_context: Optional[BaseContext] = None) -> None:
        self.workers = max(1, workers)
        self.context = mp_context or multiprocessing.get_context()
        self._start: Optional[system.PoolStart] = None
        self._measured = False

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
            pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)
            self._start = system.PoolStart(pool, self.workers)

    def ready(self) -> bool:
        """Whether a started pool's first worker has answered (does not wait)."""
        return self._start is not None and self._start.ready()

    def costs(self) -> system.ProcessCosts:
        """Return the process costs: cached ones, else measured on this pool."""
        cached = system.cached_process_costs(self.start_method)
        if cached is not None:
            return cached
        if self._measured:  # measured before on this pool: it is no longer fresh
            return system.process_costs(self.start_method)
        self.start()
        assert self._start is not None
        self._measured = True
        try:
            return system.measure_process_costs(self._start, self.start_method)
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
