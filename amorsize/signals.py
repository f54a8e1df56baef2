"""SIGTERM during a run is handled like Ctrl-C, then ends the process as SIGTERM would.

A supervisor (systemd, Kubernetes, docker stop, a test harness) stops a program with
SIGTERM. By default Python dies on the spot: the workers are left to notice their
parent is gone, and POST_EXECUTE (the metrics push, the last spans) never fires. So
while execute() runs in the main thread and SIGTERM still has its default action,
amorsize turns it into an exception that cancels the run like Ctrl-C; once the run has
ended cleanly the signal is delivered again with its default action. An application
that installed its own SIGTERM handler (or ignores the signal) keeps it, untouched.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Optional


class Terminated(BaseException):
    """SIGTERM arrived while a run was going (a BaseException, like KeyboardInterrupt)."""


_installed_in = 0  # the pid that installed the handler


def _raise_terminated(signum: int, frame: Optional[FrameType]) -> None:
    if os.getpid() != _installed_in:
        # A child forked while a run was going (a worker before its initializer reset
        # the handler): it must simply end, as SIGTERM's default action does. Raising
        # there could unwind the child into its parent's code, never to exit.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated("SIGTERM")


@contextmanager
def sigterm_cancels_run() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (only where its
    action is still the default)."""
    global _installed_in
    installed = False
    if (hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        try:
            _installed_in = os.getpid()
            signal.signal(signal.SIGTERM, _raise_terminated)
            installed = True
        except ValueError:  # not the main interpreter
            installed = False
    try:
        yield
    finally:
        if installed and signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


_held_back: list[int] = []  # SIGINTs that arrived while held back


def _hold_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    _held_back.append(signum)


def holds_interrupts() -> bool:
    """Whether SIGINT is being held back here (a forked worker inherits the handler
    and must restore Python's default)."""
    return signal.getsignal(signal.SIGINT) is _hold_interrupt


@contextmanager
def interrupts_held_back() -> Iterator[None]:
    """Ctrl-C (SIGINT) is held back while inside, then raised: an interrupt in the
    middle of starting a worker process leaves a worker its pool does not know of,
    which the interpreter then waits for at exit, forever. Main thread only, and only
    where SIGINT still raises KeyboardInterrupt (Python's default handler)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    _held_back.clear()
    signal.signal(signal.SIGINT, _hold_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if _held_back:
            _held_back.clear()
            raise KeyboardInterrupt


def end_as_sigterm() -> None:
    """End this process the way SIGTERM's default action does."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    sys.exit(128 + int(signal.SIGTERM))  # where the signal did not end us (Windows)
