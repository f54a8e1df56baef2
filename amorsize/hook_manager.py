"""The HookManager: callbacks registered per event and integration objects, for every
run the manager is passed to; and `RunHooks`, what one run publishes to.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Optional, Union

from amorsize.hooks import (
    Hook,
    HookCallback,
    HookContext,
    HookEvent,
    logger,
    report_hook_failure,
)


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
