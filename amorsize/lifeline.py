"""What ties a worker process to the run that started it.

- **Parent death.** A worker must not outlive the process that started it, whatever
  ended that process (SIGKILL included): orphans keep cores busy and hold the parent's
  stdout open, so a supervisor reading it hangs. On Linux the kernel's parent-death
  signal kills the worker at once (`prctl(PR_SET_PDEATHSIG)`, set when the pool is
  started from the main thread: the signal follows the thread that forked, and only
  the main thread lives as long as the process). Where that signal cannot be armed
  (other platforms, a pool started from another thread), a daemon thread in the
  worker waits on multiprocessing's parent sentinel (readable once the parent is gone)
  and checks the parent pid twice a second, then ends the worker. (Starting that
  thread costs a worker about 1 ms before its first task; the signal needs none.)
- **Nested runs.** A worker is one of n parallel workers: an execute() inside it gets
  its share of the cores (`system.usable_cores()` answers with it), not all of them.
- **Task start times.** A worker notes in shared memory which task it started and
  when, so the parent can enforce `task_timeout` on the time a task really ran, and
  knows which process to kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

# How often the watchdog looks at the parent, in seconds.
WATCH_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1

_core_budget: Optional[int] = None


def core_budget() -> Optional[int]:
    """The cores this worker process may use for a nested run (None: not a worker)."""
    return _core_budget


# ---------------------------------------------------------------- task start board

_SLOT_FIELDS = 3  # pid, task key, monotonic start


class StartBoard:
    """Shared memory where process workers note the task they run and since when.

    Forked workers inherit an anonymous shared mapping as it is; workers started by
    spawn or a fork server get the board pickled, so it is a multiprocessing RawArray
    there (a file-backed arena: a few ms more to set up, on the first run only)."""

    def __init__(self, context: Any, slots: int) -> None:
        self.slots = slots
        self.cells: Any
        if context.get_start_method() == "fork":
            self._mapping = mmap.mmap(-1, _SLOT_FIELDS * slots * ctypes.sizeof(ctypes.c_double))
            self.cells = (ctypes.c_double * (_SLOT_FIELDS * slots)).from_buffer(self._mapping)
        else:
            self.cells = context.RawArray("d", _SLOT_FIELDS * slots)
        self.claim_lock = context.Lock()

    def pids(self) -> list[int]:
        """Pids of the workers that took a slot (some may have ended since)."""
        cells = self.cells
        return [int(cells[slot * _SLOT_FIELDS]) for slot in range(self.slots)
                if cells[slot * _SLOT_FIELDS] > 0]

    def claim(self) -> int:
        """Take a free slot for this process (one whose worker ended, when recycled)."""
        cells = self.cells
        with self.claim_lock:
            for slot in range(self.slots):
                pid = int(cells[slot * _SLOT_FIELDS])
                if pid <= 0 or not alive(pid):
                    cells[slot * _SLOT_FIELDS + 1] = -1
                    cells[slot * _SLOT_FIELDS] = os.getpid()
                    return slot
        return -1

    def started(self, key: int) -> Optional[tuple[int, float]]:
        """(pid, monotonic start) of the worker running task `key`, if one noted it."""
        cells = self.cells
        for slot in range(self.slots):
            base = slot * _SLOT_FIELDS
            if cells[base + 1] == key:
                return int(cells[base]), cells[base + 2]
        return None


_board: Optional[StartBoard] = None
_slot = -1
# Tasks running on threads of this process (thread pools, the calling process).
_thread_starts: dict[int, float] = {}


def mark_task_start(key: int) -> None:
    """Note that this worker starts task `key` now."""
    board = _board
    if board is not None and _slot >= 0:
        base = _slot * _SLOT_FIELDS
        board.cells[base + 2] = time.monotonic()
        board.cells[base + 1] = key
    else:
        _thread_starts[key] = time.monotonic()


def mark_task_end(key: int) -> None:
    """Note that task `key` ended here."""
    board = _board
    if board is not None and _slot >= 0:
        board.cells[_slot * _SLOT_FIELDS + 1] = -1
    else:
        _thread_starts.pop(key, None)


def thread_task_started(key: int) -> Optional[float]:
    """Monotonic start of task `key` on a thread of this process, if it started."""
    return _thread_starts.get(key)


# ---------------------------------------------------------------- parent death


_prctl: Any = None  # libc's prctl once looked up; False where there is none


def find_prctl() -> Any:
    """libc's prctl (Linux), looked up once: a pool looks it up before it forks, so
    forked workers inherit it instead of loading libc's symbols each (~0.4 ms)."""
    global _prctl
    if _prctl is None:
        _prctl = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):  # the process's own symbols
                _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent thread ends."""
    prctl = find_prctl()
    return bool(prctl) and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _watch_parent(parent_pid: int, first_ppid: int) -> None:
    """Wait until the parent is gone, then end this worker at once."""
    sentinel = None
    try:
        import multiprocessing
        from multiprocessing.connection import wait

        parent = multiprocessing.parent_process()
        sentinel = parent.sentinel if parent is not None else None
    except (ImportError, AttributeError, ValueError):
        wait = None  # type: ignore[assignment]
    while True:
        if sentinel is not None and wait is not None:
            try:
                if wait([sentinel], timeout=WATCH_INTERVAL):
                    break
            except (OSError, ValueError):
                sentinel = None
        else:
            time.sleep(WATCH_INTERVAL)
        if os.getppid() != first_ppid or not alive(parent_pid):
            break
    os._exit(1)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def init_worker(parent_pid: int, use_death_signal: bool, cores: int,
                board: Optional[StartBoard]) -> None:
    """Initializer of every process worker amorsize starts (see the module doc)."""
    global _core_budget, _board, _slot
    if hasattr(signal, "SIGTERM"):
        # A forked worker inherits the parent's handlers, among them the one a run
        # installs to turn SIGTERM into a cancel: a worker must just end.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    first_ppid = os.getppid()
    # Started by the fork server (whose main thread forks, and which ends with its
    # client), or by the parent's main thread: the signal then means what it says.
    armed = (use_death_signal or first_ppid != parent_pid) and _set_parent_death_signal()
    if not alive(parent_pid):  # died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid, first_ppid),
                         name="amorsize-lifeline", daemon=True).start()
    _core_budget = max(1, cores)
    if board is not None:
        _slot = board.claim()
        _board = board
