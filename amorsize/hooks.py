"""Hook events: what a run tells the code that watches it, in the calling process.

Two ways to listen, both fed by one `RunPublisher` per execute():
- callbacks registered on a `HookManager` (`manager.register(event, fn)`), called with
  a `HookContext` for every event of every run the manager is passed to;
- run-scoped integrations: a `Hook` whose `start_run(ctx)` returns a `RunObserver` at
  PRE_EXECUTE. The observer receives the rest of that run's events and holds that
  run's state, so one integration object serves concurrent runs without per-run
  dictionaries of its own.

Callbacks and observers run synchronously, isolated from each other: one that raises
is logged through `logging`, counted (per manager in `get_stats()`, and for the whole
process in `hook_error_counts()`), and never changes the results of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Optional

from amorsize.lazy import lazy_names

logger = logging.getLogger(__name__)


class HookEvent(Enum):
    """The points of a run at which hooks are called."""

    PRE_EXECUTE = "pre_execute"
    POST_EXECUTE = "post_execute"
    ON_WORKER_START = "on_worker_start"
    ON_WORKER_END = "on_worker_end"
    ON_CHUNK_COMPLETE = "on_chunk_complete"
    ON_ERROR = "on_error"
    ON_PROGRESS = "on_progress"
    ON_PLAN_CHANGE = "on_plan_change"

    # Members are singletons compared by identity: hash them by identity too, in C.
    # Enum's own __hash__ is a Python call, most of an event without callbacks.
    __hash__ = object.__hash__


@dataclass(slots=True)
class HookContext:
    """What a callback is told about the run. Only `event` is required.

    docs/design.md lists which fields each event sets. Extras an integration may want
    go in `metadata`.
    """

    event: HookEvent
    timestamp: float = field(default_factory=time.time)
    # The run.
    execution_id: str = ""
    function: str = ""  # "module:qualname", the metrics' `function` label
    executor_type: str = ""  # serial, thread, process or external: the current plan
    status: Optional[str] = None  # success, error or cancelled (ON_ERROR, POST_EXECUTE)
    run_started_at: float = 0.0  # time.time() when execute() began
    # The plan.
    n_jobs: int = 0
    chunksize: int = 0
    total_items: Optional[int] = None
    estimated_speedup: Optional[float] = None  # the current estimate
    first_estimated_speedup: Optional[float] = None  # the estimate at PRE_EXECUTE
    optimization: Any = None  # the OptimizationResult behind the current plan
    # Progress.
    items_completed: int = 0
    items_remaining: Optional[int] = None
    percent_complete: Optional[float] = None
    elapsed_time: float = 0.0  # seconds since execute() began
    estimated_time_remaining: Optional[float] = None
    throughput_items_per_sec: float = 0.0
    avg_item_time: Optional[float] = None
    # Workers.
    worker_id: Optional[int] = None  # None: the calling process, in a pool run
    worker_count: int = 0
    pid: Optional[int] = None
    # A task (chunk), as the worker measured it.
    chunk_id: Optional[int] = None
    chunk_size: int = 0
    chunk_time: float = 0.0
    chunk_started_at: Optional[float] = None  # the worker's time.time()
    chunk_ended_at: Optional[float] = None
    chunk_start_index: Optional[int] = None  # input position of the task's first item
    sampled: bool = False  # ran in the calling process while deciding
    # Failure.
    error: Optional[BaseException] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    error_traceback: Optional[str] = None
    # The outcome (POST_EXECUTE).
    results_count: int = 0
    results_size_bytes: Optional[int] = None
    actual_speedup: Optional[float] = None
    parallel_efficiency: Optional[float] = None
    busy_seconds: Optional[float] = None
    metadata: dict[str, Any] = field(default_factory=dict)


HookCallback = Callable[[HookContext], None]


class RunObserver:
    """Receives the events of one run after its PRE_EXECUTE; holds that run's state.

    Override the methods you need; the others cost nothing (the publisher builds no
    context for an event nobody listens to). `on_post_execute` is the last call, also
    after an error or a cancel.
    """

    def on_worker_start(self, ctx: HookContext) -> None:
        """A worker reported for the first time in this run."""

    def on_chunk_complete(self, ctx: HookContext) -> None:
        """A task finished."""

    def on_progress(self, ctx: HookContext) -> None:
        """Throttled progress, and a final one at 100 %."""

    def on_plan_change(self, ctx: HookContext) -> None:
        """The run revised its plan (executor, workers or task size)."""

    def on_error(self, ctx: HookContext) -> None:
        """The function raised, a worker died, a task timed out, or the run was cancelled."""

    def on_worker_end(self, ctx: HookContext) -> None:
        """The run ended; one per worker."""

    def on_post_execute(self, ctx: HookContext) -> None:
        """The run ended (success, error or cancelled)."""


OBSERVER_METHODS: dict[HookEvent, str] = {
    HookEvent.ON_WORKER_START: "on_worker_start",
    HookEvent.ON_CHUNK_COMPLETE: "on_chunk_complete",
    HookEvent.ON_PROGRESS: "on_progress",
    HookEvent.ON_PLAN_CHANGE: "on_plan_change",
    HookEvent.ON_ERROR: "on_error",
    HookEvent.ON_WORKER_END: "on_worker_end",
    HookEvent.POST_EXECUTE: "on_post_execute",
}


def observed_events(observer: RunObserver) -> frozenset[HookEvent]:
    """The events whose method `observer`'s class overrides."""
    cls = type(observer)
    return frozenset(
        event for event, name in OBSERVER_METHODS.items()
        if getattr(cls, name) is not getattr(RunObserver, name)
    )


class Hook:
    """Base of an integration object (Prometheus, OpenTelemetry, a progress bar...).

    `start_run(ctx)` is called at every run's PRE_EXECUTE and may return a
    `RunObserver` for that run. `callbacks()` may return plain callbacks per event
    instead (stateless hooks). Pass the object in `execute(hooks=...)` for one run, or
    `manager.add(obj)` to a manager for every run of that manager.
    """

    def start_run(self, ctx: HookContext) -> Optional[RunObserver]:
        """Return an observer of the run that `ctx` (its PRE_EXECUTE) starts, or None."""
        return None

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Return the callback to call for each event this object handles."""
        return {}

    def attached(self, manager: HookManager) -> None:
        """Called once when this object is added to `manager`."""


# ---------------------------------------------------------------- failures


_error_lock = threading.Lock()
_process_errors: dict[str, int] = {event.value: 0 for event in HookEvent}


def hook_error_counts() -> dict[str, int]:
    """Hook callbacks and observers that raised in this process so far, per event value.

    One process-wide count: reading it costs the same however many runs failed.
    """
    with _error_lock:
        return dict(_process_errors)


def report_hook_failure(event: HookEvent, hook: object) -> None:
    """Log the exception being handled as a failed hook, and count it."""
    logger.exception("amorsize hook %r raised on %s; the run goes on",
                     getattr(hook, "__qualname__", hook), event.value)
    with _error_lock:
        _process_errors[event.value] += 1


# ---------------------------------------------------------------- re-exports

# The manager and the ready-made callbacks live in their own modules; these names
# stay importable from here, as in the original API (loaded on first use: those
# modules import this one).
_MOVED = {
    "HookManager": "amorsize.hook_manager",
    "HooksArgument": "amorsize.hook_manager",
    "RunHooks": "amorsize.hook_manager",
    "as_run_hooks": "amorsize.hook_manager",
    "create_progress_hook": "amorsize.callbacks",
    "create_timing_hook": "amorsize.callbacks",
    "create_throughput_hook": "amorsize.callbacks",
    "create_error_hook": "amorsize.callbacks",
}

if TYPE_CHECKING:
    from amorsize.callbacks import create_error_hook as create_error_hook
    from amorsize.callbacks import create_progress_hook as create_progress_hook
    from amorsize.callbacks import create_throughput_hook as create_throughput_hook
    from amorsize.callbacks import create_timing_hook as create_timing_hook
    from amorsize.hook_manager import HookManager as HookManager
    from amorsize.hook_manager import HooksArgument as HooksArgument
    from amorsize.hook_manager import RunHooks as RunHooks
    from amorsize.hook_manager import as_run_hooks as as_run_hooks


__getattr__ = lazy_names(__name__, _MOVED, globals())
