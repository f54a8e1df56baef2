"""amorsize: run a function over many items in parallel, decided and observed.

`execute(func, data)` decides serial, threads or processes from what the function
costs, runs it, keeps revising the plan from what the workers measure, and returns
the results in input order. Hook events report the run as it happens; integrations
publish them to Prometheus and OpenTelemetry.

The names below are imported on first use, so `import amorsize` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amorsize.lazy import lazy_names

__version__ = "0.2.0"

_EXPORTS = {
    "execute": "amorsize.executor",
    "execute_iter": "amorsize.executor",
    "shutdown_workers": "amorsize.executor",
    "optimize": "amorsize.optimizer",
    "OptimizationResult": "amorsize.optimizer",
    "Figures": "amorsize.optimizer",
    "ExecutionCancelled": "amorsize.errors",
    "FunctionExitedError": "amorsize.errors",
    "TaskTimeoutError": "amorsize.errors",
    "WorkerDiedError": "amorsize.errors",
    "WorkerTraceback": "amorsize.errors",
    "Hook": "amorsize.hooks",
    "HookContext": "amorsize.hooks",
    "HookEvent": "amorsize.hooks",
    "HookManager": "amorsize.hook_manager",
    "RunObserver": "amorsize.hooks",
    "create_error_hook": "amorsize.callbacks",
    "create_progress_hook": "amorsize.callbacks",
    "create_throughput_hook": "amorsize.callbacks",
    "create_timing_hook": "amorsize.callbacks",
}

__all__ = [
    "ExecutionCancelled",
    "Figures",
    "FunctionExitedError",
    "Hook",
    "HookContext",
    "HookEvent",
    "HookManager",
    "OptimizationResult",
    "RunObserver",
    "TaskTimeoutError",
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

if TYPE_CHECKING:
    from amorsize.callbacks import (
        create_error_hook,
        create_progress_hook,
        create_throughput_hook,
        create_timing_hook,
    )
    from amorsize.errors import (
        ExecutionCancelled,
        FunctionExitedError,
        TaskTimeoutError,
        WorkerDiedError,
        WorkerTraceback,
    )
    from amorsize.executor import execute, execute_iter, shutdown_workers
    from amorsize.hook_manager import HookManager
    from amorsize.hooks import Hook, HookContext, HookEvent, RunObserver
    from amorsize.optimizer import Figures, OptimizationResult, optimize


__getattr__ = lazy_names("amorsize", _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
