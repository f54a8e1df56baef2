"""A busy machine on demand: one busy-loop process per core, started and stopped here.

    with BusyLoops(cores):
        ...  # measurements taken while every core also runs `while True: pass`

Each loop is `python -c "while True: pass"`. On Linux the kernel kills a loop when the
harness dies (PR_SET_PDEATHSIG), so a killed benchmark leaves none behind; elsewhere
the harness stops them on exit, Ctrl-C included.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from types import TracebackType
from typing import Optional

BUSY_LOOP = "while True: pass"
# Time for the loops to start and be scheduled before anything is measured.
SETTLE_SECONDS = 0.5


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent process dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class BusyLoops:
    """`count` busy-loop processes while the context is open."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyLoops:
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        for _ in range(self.count):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                preexec_fn=preexec))  # safe: the harness starts no threads
        time.sleep(SETTLE_SECONDS)
        for process in self.processes:
            if process.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"a busy loop exited at once (code {process.returncode})")
        return self

    def __exit__(self, kind: Optional[type[BaseException]], error: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
        self.processes = []
