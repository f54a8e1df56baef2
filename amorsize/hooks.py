"""Hook events: a small, thread-safe event system fired by execute() in the parent.

Callbacks receive a `HookContext`. They run synchronously in the process that called
execute(), outside the manager's lock, isolated from each other: a callback that
raises is logged through `logging`, counted in `get_stats()["error_counts"]`, and never
changes the results of the run.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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

    # Members are singletons compared by identity: hash them by identity too, in C.
    # Enum's own __hash__ is a Python call, most of an event without callbacks.
    __hash__ = object.__hash__


@dataclass(slots=True)
class HookContext:
    """What a callback is told about the run. Only `event` is required.

    Slotted: one is built per event, and slots make that cheaper (put extra
    information in `metadata`)."""

    event: HookEvent
    timestamp: float = field(default_factory=time.time)
    n_jobs: int = 0
    chunksize: int = 0
    total_items: Optional[int] = None
    items_completed: int = 0
    items_remaining: Optional[int] = None
    percent_complete: Optional[float] = None
    elapsed_time: float = 0.0
    estimated_time_remaining: Optional[float] = None
    throughput_items_per_sec: float = 0.0
    avg_item_time: Optional[float] = None
    worker_id: Optional[int] = None
    worker_count: int = 0
    chunk_id: Optional[int] = None
    chunk_size: int = 0
    chunk_time: float = 0.0
    error: Optional[BaseException] = None
    error_message: Optional[str] = None
    error_traceback: Optional[str] = None
    results_count: int = 0
    results_size_bytes: Optional[int] = None
    metadata: dict[str, Any] = field(default_factory=dict)


HookCallback = Callable[[HookContext], None]


class Hook:
    """Base for an integration object that subscribes to several events at once.

    Subclasses return their callbacks from `callbacks()`; `HookManager.add()` and
    execute(hooks=...) register each of them. `attached()` is called with the manager
    so an integration can read the manager's statistics.
    """

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Return the callback to call for each event this object handles."""
        return {}

    def attached(self, manager: HookManager) -> None:
        """Called once when this object is added to `manager`."""


class _Dispatch:
    """The callbacks of one event as registered at one time, and how often they ran.

    trigger() counts with `next(ticks)`, atomic without a lock. `triggers()` reads the
    count by taking a tick too, and subtracts the ticks taken by reads.
    """

    __slots__ = ("callbacks", "ticks", "_reads")

    def __init__(self, callbacks: tuple[HookCallback, ...]) -> None:
        self.callbacks = callbacks
        self.ticks = itertools.count()
        self._reads = 0

    def triggers(self) -> int:
        """How often these callbacks were triggered (call under the manager's lock)."""
        value = next(self.ticks) - self._reads
        self._reads += 1
        return value


# Replaced dispatch entries kept (their triggers counted on demand) before the oldest
# are folded into a plain number: a trigger still running on an entry replaced a
# moment ago is then counted too.
_RETIRED_KEPT = 32


class HookManager:
    """Registry of callbacks per event; thread-safe; isolates raising callbacks."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._lock = threading.Lock()
        self._callbacks: dict[HookEvent, tuple[HookCallback, ...]] = {}
        self._dispatch: dict[HookEvent, _Dispatch] = {}
        self._retired: dict[HookEvent, list[_Dispatch]] = {event: [] for event in HookEvent}
        self._folded_calls: dict[HookEvent, int] = {event: 0 for event in HookEvent}
        self._error_counts: dict[HookEvent, int] = {event: 0 for event in HookEvent}
        self._objects: list[Hook] = []

    def _set_callbacks(self, event: HookEvent, callbacks: tuple[HookCallback, ...]) -> None:
        """Replace the callbacks of `event` (hold the lock)."""
        old = self._dispatch.pop(event, None)
        if old is not None:
            retired = self._retired[event]
            retired.append(old)
            while len(retired) > _RETIRED_KEPT:
                oldest = retired.pop(0)
                self._folded_calls[event] += len(oldest.callbacks) * oldest.triggers()
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
        """Register every callback of an integration object."""
        if not isinstance(hook, Hook):
            raise TypeError(
                f"hook objects must subclass amorsize.hooks.Hook, got {type(hook).__name__}"
            )
        for event, callback in hook.callbacks().items():
            self.register(event, callback)
        with self._lock:
            if hook not in self._objects:
                self._objects.append(hook)
            else:
                return
        hook.attached(self)

    def remove(self, hook: Hook) -> None:
        """Unregister every callback of an integration object."""
        for event, callback in hook.callbacks().items():
            self.unregister(event, callback)
        with self._lock:
            if hook in self._objects:
                self._objects.remove(hook)

    def unregister(self, event: HookEvent, callback: HookCallback) -> bool:
        """Remove `callback` from `event`; return whether it was registered."""
        with self._lock:
            current = self._callbacks.get(event, ())
            if callback not in current:
                return False
            self._set_callbacks(event, tuple(cb for cb in current if cb != callback))
            return True

    def unregister_all(self, event: Optional[HookEvent] = None) -> int:
        """Remove all callbacks of `event` (all events if None); return how many."""
        with self._lock:
            events = list(self._callbacks) if event is None else [event]
            removed = sum(len(self._callbacks.get(e, ())) for e in events)
            for each in events:
                self._set_callbacks(each, ())
            if event is None:
                self._objects.clear()
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

    def trigger(self, ctx: HookContext) -> None:
        """Call every callback of `ctx.event` with `ctx`, isolating failures."""
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
                logger.exception(
                    "amorsize hook %r raised on %s; the run goes on",
                    getattr(callback, "__qualname__", callback),
                    event.value,
                )
        next(dispatch.ticks)
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
        """Return how many callbacks raised, per event value."""
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


def as_hook_manager(hooks: HooksArgument) -> Optional[HookManager]:
    """Normalise execute()'s `hooks=` argument to one HookManager (or None)."""
    if hooks is None or isinstance(hooks, HookManager):
        return hooks
    if isinstance(hooks, Hook):
        manager = HookManager()
        manager.add(hooks)
        return manager
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Iterable):
        raise TypeError(
            "hooks must be a HookManager, a Hook object or a list of them, "
            f"got {type(hooks).__name__}"
        )
    items = list(hooks)
    if not items:
        return None
    managers = [h for h in items if isinstance(h, HookManager)]
    if len(managers) > 1:
        raise TypeError("hooks may contain at most one HookManager; merge the others into it")
    manager = managers[0] if managers else HookManager()
    for item in items:
        if isinstance(item, HookManager):
            continue
        if not isinstance(item, Hook):
            raise TypeError(
                "each entry of hooks must be a Hook object or a HookManager, "
                f"got {type(item).__name__}"
            )
        manager.add(item)
    return manager


def create_progress_hook(
    callback: Callable[[float, int, Optional[int]], None], min_interval: float = 1.0
) -> HookCallback:
    """Build an ON_PROGRESS callback calling `callback(percent, completed, total)`.

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


def create_error_hook(callback: Callable[[BaseException, Optional[str]], None]) -> HookCallback:
    """Build an ON_ERROR callback calling `callback(error, traceback_str)` when set."""

    def on_error(ctx: HookContext) -> None:
        if ctx.error is not None:
            callback(ctx.error, ctx.error_traceback)

    return on_error
