"""The process pool a first decision starts to measure what processes cost, kept for
the run that follows.

The first execute() in a process has no measured process costs yet. Measuring them
on a throwaway pool means starting worker processes twice: once to measure, once to
run. Instead execute() hands the optimizer a `ProbePool`: when (and only when) the
decision needs the costs and they are not cached, it starts the pool the run would
most likely use (one worker per usable core, or the n_jobs the caller fixed),
measures on it, and `take()` hands that pool, workers already started, to the run if
the decision wants exactly such a pool. Whatever is not taken is shut down by
`close()`, so no worker process outlives execute().
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Optional

from amorsize import system


class ProbePool:
    """A process pool started on demand to measure process costs, offered to the run."""

    def __init__(self, workers: int, mp_context: Optional[BaseContext] = None) -> None:
        self.workers = max(1, workers)
        self.context = mp_context or multiprocessing.get_context()
        self._pool: Optional[ProcessPoolExecutor] = None

    @property
    def start_method(self) -> str:
        """The start method of the pool this probe starts."""
        return self.context.get_start_method()

    def costs(self) -> system.ProcessCosts:
        """Return the process costs: cached ones, else measured on a new pool kept here."""
        cached = system.cached_process_costs(self.start_method)
        if cached is not None:
            return cached
        if self._pool is not None:  # measured once already: this pool is no longer fresh
            return system.process_costs(self.start_method)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)
        try:
            return system.measure_process_costs(self._pool, self.workers, self.start_method)
        except BaseException:
            self.close()
            raise

    def take(self, n_jobs: int) -> Optional[ProcessPoolExecutor]:
        """Hand over the started pool if it has `n_jobs` workers (the caller then owns
        it); else None."""
        pool = self._pool
        if pool is None or n_jobs != self.workers or getattr(pool, "_broken", False):
            return None
        self._pool = None
        return pool

    def close(self) -> None:
        """Shut down the pool if it was started and not taken."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
