"""amorsize: run a function over many items in parallel, decided and observed.

`execute(func, data)` measures the function on a few items, decides serial, threads
or processes (n_jobs, chunksize) from a cost model, runs it and returns the results in
input order. Hook events report the run as it happens; integrations publish them to
Prometheus and OpenTelemetry.
"""

from amorsize.executor import (
    ExecutionCancelled,
    WorkerDiedError,
    WorkerTraceback,
    execute,
    execute_iter,
    shutdown_workers,
)
from amorsize.hooks import (
    Hook,
    HookContext,
    HookEvent,
    HookManager,
    create_error_hook,
    create_progress_hook,
    create_throughput_hook,
    create_timing_hook,
)
from amorsize.optimizer import OptimizationResult, optimize

__version__ = "0.1.0"

__all__ = [
    "ExecutionCancelled",
    "Hook",
    "HookContext",
    "HookEvent",
    "HookManager",
    "OptimizationResult",
    "WorkerDiedError",
    "WorkerTraceback",
    "__version__",
    "create_error_hook",
    "create_progress_hook",
    "create_throughput_hook",
    "create_timing_hook",
    "execute",
    "execute_iter",
    "optimize",
    "shutdown_workers",
]
