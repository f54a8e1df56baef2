"""`python -m amorsize demo` in a subprocess, for tests that need the real application.

The demo runs from this checkout (cwd and PYTHONPATH are the repository root), serves
/metrics on a port it picks itself (`--metrics-port 0`), and its output is read line
by line in a thread so a test can wait for a line without blocking on the pipe.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0  # generous: the machine may be busy; every wait polls a condition


class DemoProcess:
    """A running demo; `args` are extra `amorsize demo` arguments."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amorsize", "demo", "--metrics-port", "0", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def wait_for_line(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """Return the first output line matching `pattern`, waiting for it."""
        regex = re.compile(pattern)
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            for line in self.lines[seen:]:
                if match := regex.search(line):
                    return match
            seen = len(self.lines)
            if time.monotonic() >= deadline or (
                    self.process.poll() is not None and self._queue.empty()
                    and not self._reader.is_alive()):
                raise AssertionError(f"no line matching {pattern!r}; output:\n{self.output()}")
            with contextlib.suppress(queue.Empty):
                self.lines.append(self._queue.get(timeout=0.2))

    def metrics_port(self) -> int:
        """The port the demo serves /metrics on (from its first line)."""
        return int(self.wait_for_line(r"metrics: http://[\d.]+:(\d+)/metrics").group(1))

    def output(self) -> str:
        """Everything the demo printed so far."""
        self._drain()
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (if still running), wait for the exit (kill after the deadline);
        return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reader.join(timeout=10)
        self._drain()
        return self.process.returncode

    def kill(self) -> None:
        """Kill the demo and its worker processes at once."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> DemoProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
