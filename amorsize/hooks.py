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

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Optional, Union

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


# ---------------------------------------------------------------- the manager


class _Dispatch:
    """The callbacks of one event as registered at one time, and how often they ran.

    trigger() counts with `next(ticks)`, atomic without a lock. `triggers()` reads the
    count by taking a tick too, and subtracts the ticks taken by reads. Once `fold()`ed
    into the manager's plain number, a trigger that ticks later adds its calls itself.
    """

    __slots__ = ("callbacks", "ticks", "_reads", "folded", "_counted")

    def __init__(self, callbacks: tuple[HookCallback, ...]) -> None:
        self.callbacks = callbacks
        self.ticks = itertools.count()
        self._reads = 0
        self.folded = False
        self._counted = 0

    def triggers(self) -> int:
        """How often these callbacks were triggered (call under the manager's lock)."""
        value = next(self.ticks) - self._reads
        self._reads += 1
        return value

    def fold(self) -> int:
        """Calls to add to the manager's plain number now (call under its lock)."""
        self.folded = True  # first: a trigger that ticks after the reading below sees it
        return self.uncounted()

    def uncounted(self) -> int:
        """Calls not yet added to the manager's plain number (call under its lock)."""
        triggers = self.triggers()
        added, self._counted = triggers - self._counted, triggers
        return len(self.callbacks) * added


# Replaced dispatch entries kept (their triggers counted on demand) before the oldest
# are folded into a plain number; a trigger still running on a folded entry counts
# its calls itself when it ends.
_RETIRED_KEPT = 32


class HookManager:
    """Registry of callbacks per event, and of integration objects; thread-safe."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._lock = threading.Lock()
        self._callbacks: dict[HookEvent, tuple[HookCallback, ...]] = {}
        self._dispatch: dict[HookEvent, _Dispatch] = {}
        self._retired: dict[HookEvent, list[_Dispatch]] = {event: [] for event in HookEvent}
        self._folded_calls: dict[HookEvent, int] = {event: 0 for event in HookEvent}
        self._error_counts: dict[HookEvent, int] = {event: 0 for event in HookEvent}
        self._objects: tuple[Hook, ...] = ()

    def _set_callbacks(self, event: HookEvent, callbacks: tuple[HookCallback, ...]) -> None:
        """Replace the callbacks of `event` (hold the lock)."""
        old = self._dispatch.pop(event, None)
        if old is not None:
            retired = self._retired[event]
            retired.append(old)
            while len(retired) > _RETIRED_KEPT:
                self._folded_calls[event] += retired.pop(0).fold()
        if callbacks:
            self._callbacks[event] = callbacks
            self._dispatch[event] = _Dispatch(callbacks)
        else:
            self._callbacks.pop(event, None)

    def _call_count(self, event: HookEvent) -> int:
        """Callbacks called for `event` so far (hold the lock)."""
        entries = [*self._retired[event]]
        current = self._dispatch.get(event)
        if current is not None:
            entries.append(current)
        return self._folded_calls[event] + sum(len(d.callbacks) * d.triggers() for d in entries)

    def register(self, event: HookEvent, callback: HookCallback) -> None:
        """Call `callback(ctx)` on every `event`; registering it twice keeps one."""
        if not isinstance(event, HookEvent):
            raise TypeError(f"event must be a HookEvent, got {type(event).__name__}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            current = self._callbacks.get(event, ())
            if callback not in current:
                self._set_callbacks(event, current + (callback,))

    def on(self, event: HookEvent) -> Callable[[HookCallback], HookCallback]:
        """Decorator form of register(): `@hooks.on(HookEvent.POST_EXECUTE)`."""

        def decorator(callback: HookCallback) -> HookCallback:
            self.register(event, callback)
            return callback

        return decorator

    def add(self, hook: Hook) -> None:
        """Add an integration object: its callbacks, and its observer for every run."""
        if not isinstance(hook, Hook):
            raise TypeError(
                f"hook objects must subclass amorsize.hooks.Hook, got {type(hook).__name__}"
            )
        with self._lock:
            if hook in self._objects:
                return
            self._objects = (*self._objects, hook)
        for event, callback in hook.callbacks().items():
            self.register(event, callback)
        hook.attached(self)

    def remove(self, hook: Hook) -> None:
        """Remove an integration object added with add()."""
        for event, callback in hook.callbacks().items():
            self.unregister(event, callback)
        with self._lock:
            self._objects = tuple(h for h in self._objects if h is not hook)

    def hook_objects(self) -> tuple[Hook, ...]:
        """The integration objects added to this manager."""
        return self._objects

    def unregister(self, event: HookEvent, callback: HookCallback) -> bool:
        """Remove `callback` from `event`; return whether it was registered."""
        with self._lock:
            current = self._callbacks.get(event, ())
            if callback not in current:
                return False
            self._set_callbacks(event, tuple(cb for cb in current if cb != callback))
            return True

    def unregister_all(self, event: Optional[HookEvent] = None) -> int:
        """Remove all callbacks of `event` (all events and objects if None); return how
        many callbacks were removed."""
        with self._lock:
            events = list(self._callbacks) if event is None else [event]
            removed = sum(len(self._callbacks.get(e, ())) for e in events)
            for each in events:
                self._set_callbacks(each, ())
            if event is None:
                self._objects = ()
            return removed

    def has_hooks(self, event: HookEvent) -> bool:
        """Return whether any callback is registered for `event`."""
        return event in self._callbacks

    def get_hook_count(self, event: HookEvent) -> int:
        """Return the number of callbacks registered for `event`."""
        return len(self._callbacks.get(event, ()))

    def active_events(self) -> frozenset[HookEvent]:
        """Return the events that have at least one callback."""
        return frozenset(self._callbacks)

    def trigger(self, event_or_ctx: Union[HookEvent, HookContext],
                ctx: Optional[HookContext] = None) -> None:
        """Call every callback of the event with the context, isolating failures.

        `trigger(ctx)`, or `trigger(event, ctx)`: the callbacks of `event` then get a
        copy of `ctx` for that event, and the caller's `ctx` is left as it was.
        """
        if isinstance(event_or_ctx, HookContext):
            if ctx is not None:
                raise ValueError("context parameter must be None when the first "
                                 "parameter is a HookContext")
            ctx = event_or_ctx
        elif isinstance(event_or_ctx, HookEvent):
            if ctx is None:
                raise ValueError("context parameter must be provided with an event")
            if ctx.event is not event_or_ctx:
                ctx = replace(ctx, event=event_or_ctx)
        else:
            raise TypeError("First parameter must be HookEvent or HookContext, "
                            f"got {type(event_or_ctx).__name__}")
        dispatch = self._dispatch.get(ctx.event)
        if dispatch is None:
            return
        event = ctx.event
        callbacks = dispatch.callbacks
        failures = 0
        for callback in callbacks:
            try:
                callback(ctx)
            except Exception:
                failures += 1
                report_hook_failure(event, callback)
        next(dispatch.ticks)
        if dispatch.folded:  # replaced and folded while the callbacks ran: count them now
            with self._lock:
                self._folded_calls[event] += dispatch.uncounted()
        if failures:
            with self._lock:
                self._error_counts[event] += failures
        if self.verbose:
            logger.info("amorsize hooks: %s -> %d callback(s)", event.value, len(callbacks))

    def get_call_count(self, event: HookEvent) -> int:
        """Return how many callbacks of `event` have been called so far."""
        with self._lock:
            return self._call_count(event)

    def get_error_counts(self) -> dict[str, int]:
        """Return how many callbacks of this manager raised, per event value."""
        with self._lock:
            return {e.value: n for e, n in self._error_counts.items()}

    def get_stats(self) -> dict[str, dict[str, int]]:
        """Return registered, called and failed callback counts per event value."""
        with self._lock:
            return {
                "hook_counts": {e.value: len(self._callbacks.get(e, ())) for e in HookEvent},
                "call_counts": {e.value: self._call_count(e) for e in HookEvent},
                "error_counts": {e.value: n for e, n in self._error_counts.items()},
            }


HooksArgument = Union[None, HookManager, Hook, Iterable[Union[Hook, HookManager]]]


@dataclass(frozen=True)
class RunHooks:
    """What one run publishes to: managers (their callbacks and objects), and Hook
    objects passed for this run alone. Normalising never changes a caller's manager."""

    managers: tuple[HookManager, ...] = ()
    hooks: tuple[Hook, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.managers or self.hooks)

    def with_hook(self, hook: Hook) -> RunHooks:
        """These hooks and one more for this run (progress=, report=, verbose=)."""
        return RunHooks(self.managers, (*self.hooks, hook))


def as_run_hooks(hooks: HooksArgument) -> RunHooks:
    """Check execute()'s `hooks=` argument and normalise it to a RunHooks."""
    if hooks is None:
        return RunHooks()
    if isinstance(hooks, HookManager):
        return RunHooks(managers=(hooks,))
    if isinstance(hooks, Hook):
        return RunHooks(hooks=(hooks,))
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Iterable):
        raise TypeError(
            "hooks must be a HookManager, a Hook object or a list of them, "
            f"got {type(hooks).__name__}"
        )
    managers: list[HookManager] = []
    objects: list[Hook] = []
    for item in hooks:
        if isinstance(item, HookManager):
            if item not in managers:
                managers.append(item)
        elif isinstance(item, Hook):
            if item not in objects:
                objects.append(item)
        else:
            raise TypeError(
                "each entry of hooks must be a Hook object or a HookManager, "
                f"got {type(item).__name__}"
            )
    return RunHooks(tuple(managers), tuple(objects))


# ---------------------------------------------------------------- ready-made callbacks


def create_progress_hook(
    callback: Callable[[float, int, Optional[int]], None], min_interval: float = 1.0
) -> HookCallback:
    """Build an ON_PROGRESS (or POST_EXECUTE) callback calling
    `callback(percent, completed, total)`.

    Calls are at least `min_interval` seconds apart (by `ctx.timestamp`), except the
    final one at 100 %, which always goes through.
    """
    last: list[Optional[float]] = [None]

    def on_progress(ctx: HookContext) -> None:
        percent = ctx.percent_complete
        final = percent is not None and percent >= 100.0
        previous = last[0]
        if not final and previous is not None and ctx.timestamp - previous < min_interval:
            return
        last[0] = ctx.timestamp
        callback(percent if percent is not None else 0.0, ctx.items_completed, ctx.total_items)

    return on_progress


def create_timing_hook(callback: Callable[[str, float], None]) -> HookCallback:
    """Build a callback calling `callback(event_value, elapsed_time)` on each event."""

    def on_event(ctx: HookContext) -> None:
        callback(ctx.event.value, ctx.elapsed_time)

    return on_event


def create_throughput_hook(
    callback: Callable[[float], None], min_interval: float = 5.0
) -> HookCallback:
    """Build a callback calling `callback(items_per_sec)` at most every `min_interval` s."""
    last: list[Optional[float]] = [None]

    def on_event(ctx: HookContext) -> None:
        previous = last[0]
        if previous is not None and ctx.timestamp - previous < min_interval:
            return
        last[0] = ctx.timestamp
        callback(ctx.throughput_items_per_sec)

    return on_event


def create_error_hook(callback: Callable[[BaseException, str], None]) -> HookCallback:
    """Build an ON_ERROR callback calling `callback(error, traceback_str)` when an error
    is set; `traceback_str` is "" when there is none (a cancelled run)."""

    def on_error(ctx: HookContext) -> None:
        if ctx.error is not None:
            callback(ctx.error, ctx.error_traceback or "")

    return on_error
