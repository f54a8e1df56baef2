"""Module-level functions the tests run in worker processes (picklable by reference)."""

from __future__ import annotations

import os
import signal
import time


def square(x: int) -> int:
    """Cheap CPU work."""
    return x * x


def spin(x: int, loops: int = 20_000) -> int:
    """About a millisecond of pure-Python CPU work."""
    total = 0
    for i in range(loops):
        total += i ^ x
    return total


def nap(x: int, seconds: float = 0.005) -> int:
    """I/O-like work: sleeps, releasing the GIL."""
    time.sleep(seconds)
    return x


def pid_of(x: int) -> tuple[int, int]:
    """Return the item and the pid that computed it, after a little work."""
    spin(x, 5_000)
    return x, os.getpid()


class Boom(ValueError):
    """The exception raise_on_13 raises."""


def raise_on_13(x: int) -> int:
    """Fail on item 13 only."""
    time.sleep(0.001)
    if x == 13:
        raise Boom(f"item {x} is unlucky")
    return x


def exit_on_13(x: int) -> int:
    """Kill the worker process on item 13 (no exception, the process just ends)."""
    time.sleep(0.001)
    if x == 13:
        os._exit(7)
    return x


def sigkill_on_13(x: int) -> int:
    """SIGKILL the worker process on item 13."""
    time.sleep(0.001)
    if x == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def heavy(x: int) -> int:
    """A few milliseconds of pure-Python CPU work."""
    return spin(x, 60_000)


def tag(x: object) -> tuple[object, int]:
    """Return the item and the pid that computed it (identifies every call's item)."""
    return x, os.getpid()


def sleepy_tag(x: object, seconds: float = 0.02) -> tuple[object, int]:
    """Sleep a known time in the worker, then return the item and the worker pid."""
    time.sleep(seconds)
    return x, os.getpid()


def returns_lock(x: int) -> object:
    """Return something that cannot be pickled (fails in a worker, not in the parent)."""
    import threading

    return threading.Lock()


def lock_after_10(x: int) -> object:
    """Return a picklable result for the first items, then an unpicklable one."""
    return returns_lock(x) if x >= 10 else x


def exit_3_on_13(x: int) -> int:
    """Call sys.exit(3) on item 13."""
    import sys

    if x == 13:
        sys.exit(3)
    return x


class LockedError(Exception):
    """An exception that cannot be pickled: it carries a lock."""

    def __init__(self, message: str) -> None:
        import threading

        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable_on_13(x: int) -> int:
    """Raise an exception that cannot cross a process boundary on item 13."""
    if x == 13:
        raise LockedError(f"item {x} holds a lock")
    return x


SETTINGS = {"factor": 2}


def scaled(x: int) -> int:
    """x times a module-level setting (a dict: changing it does not rebind a name)."""
    return x * SETTINGS["factor"]
