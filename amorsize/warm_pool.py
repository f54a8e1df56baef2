"""Warm worker processes: keep the last process pool for a repeated execute().

Opt-in: only runs called with `keep_workers=True` use this module; by default no
worker process outlives execute(). Starting worker processes is the largest fixed
cost of a parallel run. After such a run ended normally, execute() hands its pool
here instead of shutting it down; the next execute() of the *same function* with the
same start method (and worker count, if it fixes one) gets it back, warm, and runs
every item on it: none in the calling process, so one call never mixes the module
state the workers kept with the caller's. Only one idle pool is kept, and it is shut
down after `idle_timeout()` seconds without use, at interpreter exit, or by
`shutdown_idle()`; its workers also end with this process, whatever ends it.

When reuse is safe. A worker forked earlier holds the parent's memory as it was when
it forked, and imports anything newer from disk. So a pool is reused only for the
function it was started for, and only if nothing that function sees has changed
since:
- a function pickled by reference: the same object is still `module.qualname`, its
  module was already imported when the workers forked, and the globals its code names
  are bound to the same objects as then (a global rebound in the parent would be
  stale in the workers; a mutated object is not detected, as with any fork);
- a function sent by value (cloudpickle): the same pickled bytes.
Pools created with `max_tasks_per_child` are never reused; a broken pool, one with a
dead worker or one of another size or start method is shut down, never handed out.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from dataclasses import dataclass
from types import CodeType
from typing import Any, Optional

from amorsize.pools import ManagedPool
from amorsize.worker import FunctionPayload

_DEFAULT_IDLE_TIMEOUT = 30.0


@dataclass
class _Idle:
    """The pool kept warm and what it was started for."""

    pool: ManagedPool
    identity: tuple[Any, ...]
    released_at: float


_lock = threading.Lock()
_idle: Optional[_Idle] = None
_idle_timeout = _DEFAULT_IDLE_TIMEOUT
_timer: Optional[threading.Timer] = None
_atexit_registered = False
# Fingerprints taken when each pool's workers were started (forked), by id(pool).
_started_for: dict[int, tuple[Any, ...]] = {}


def idle_timeout() -> float:
    """Return how long an idle pool is kept, in seconds (0 means never kept)."""
    return _idle_timeout


def set_idle_timeout(seconds: float) -> None:
    """Keep an idle pool this many seconds; 0 turns worker reuse off."""
    global _idle_timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
    _idle_timeout = float(seconds)
    if seconds == 0:
        shutdown_idle()


def _code_names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _code_names(const)
    return names


def function_identity(func: Any) -> Optional[tuple[Any, ...]]:
    """Return what must be unchanged for a warm worker to run `func`, or None when
    the function cannot be reused safely (not reachable by reference, no code)."""
    if isinstance(func, FunctionPayload):
        return ("value", func.data)
    module_name = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    code = getattr(func, "__code__", None)
    if not module_name or not qualname or code is None or "<" in qualname:
        return None
    module = sys.modules.get(module_name)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not func:
        return None
    namespace = getattr(func, "__globals__", {})
    bound = tuple(sorted(
        (name, id(namespace[name])) for name in _code_names(code) if name in namespace
    ))
    return ("ref", module_name, qualname, id(func), id(module), bound)


def remember(pool: ManagedPool, func: Any) -> None:
    """Record what `func` looked like when `pool`'s workers started (call when the
    pool is made, before its first task)."""
    identity = function_identity(func)
    if identity is not None:
        with _lock:
            _started_for[id(pool)] = identity


def has_idle() -> bool:
    """Whether a pool is kept warm right now (for any function)."""
    with _lock:
        return _idle is not None


def _suits(idle: _Idle, identity: Optional[tuple[Any, ...]], n_jobs: Optional[int],
           start_method: str) -> bool:
    pool = idle.pool
    return (identity is not None and identity == idle.identity
            and (n_jobs is None or pool.workers == n_jobs)
            and pool.start_method == start_method and pool.healthy())


def idle_workers(func: Any, n_jobs: Optional[int], start_method: str) -> Optional[int]:
    """The worker count of an idle pool that would serve `func`, without taking it."""
    with _lock:
        idle = _idle
    if idle is None or not _suits(idle, function_identity(func), n_jobs, start_method):
        return None
    return idle.pool.workers


def acquire(func: Any, n_jobs: Optional[int], start_method: str) -> Optional[ManagedPool]:
    """Return the idle pool if it was started for `func` (unchanged), uses
    `start_method` and has `n_jobs` workers (any, if None); else None (any other
    idle pool is shut down)."""
    global _idle
    with _lock:
        idle, _idle = _idle, None
        _cancel_timer()
    if idle is None:
        return None
    if _suits(idle, function_identity(func), n_jobs, start_method):
        return idle.pool
    _shutdown(idle.pool)
    return None


def release(pool: ManagedPool) -> bool:
    """Offer a pool whose run ended normally for reuse; return True if it was kept
    (the caller must not shut it down), False if the caller should shut it down."""
    global _idle, _atexit_registered
    if _idle_timeout <= 0 or not pool.healthy():
        return False
    with _lock:
        identity = _started_for.get(id(pool))
        if identity is None:
            return False
        previous, _idle = _idle, _Idle(pool, identity, time.monotonic())
        if not _atexit_registered:
            atexit.register(shutdown_idle)
            _atexit_registered = True
        _start_timer()
    if previous is not None and previous.pool is not pool:
        _shutdown(previous.pool)
    return True


def shutdown_idle() -> None:
    """Shut down the idle pool now, if there is one."""
    global _idle
    with _lock:
        idle, _idle = _idle, None
        _cancel_timer()
    if idle is not None:
        _shutdown(idle.pool)


def _shutdown(pool: ManagedPool) -> None:
    with _lock:
        _started_for.pop(id(pool), None)
    pool.close(graceful=pool.healthy())


def _start_timer() -> None:
    global _timer
    _cancel_timer()
    _timer = threading.Timer(_idle_timeout, _expire)
    _timer.daemon = True
    _timer.start()


def _cancel_timer() -> None:
    global _timer
    if _timer is not None:
        _timer.cancel()
        _timer = None


def _expire() -> None:
    global _idle
    with _lock:
        idle = _idle
        if idle is None or time.monotonic() - idle.released_at < _idle_timeout * 0.99:
            return
        _idle = None
    _shutdown(idle.pool)
