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


def end_as_sigterm() -> None:
    """End this process the way SIGTERM's default action does."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    sys.exit(128 + int(signal.SIGTERM))  # where the signal did not end us (Windows)
