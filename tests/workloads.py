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
