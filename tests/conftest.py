"""Shared fixtures: a check that no worker process outlives a test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest

# Helpers multiprocessing starts once per interpreter (spawn/forkserver) and keeps for
# its lifetime; they are not workers of a run.
_MULTIPROCESSING_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
# The headless browser the report tests drive (its renderers start with each page).
_TEST_HARNESS = ("chromium", "chrome", "playwright")


def live_children() -> list[psutil.Process]:
    """Child processes of this test process that are still running (workers, not the
    multiprocessing resource tracker or fork server)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if any(helper in command for helper in _MULTIPROCESSING_HELPERS):
            continue
        if any(name in child.name() for name in _TEST_HARNESS) or "playwright" in command:
            continue
        alive.append(child)
    return alive


@pytest.fixture
def no_leftover_children() -> Iterator[None]:
    """Fail the test if it leaves a child process running (checked for up to 2 s)."""
    before = {p.pid for p in live_children()}
    yield
    deadline = time.monotonic() + 2.0
    leftover = [p for p in live_children() if p.pid not in before]
    while leftover and time.monotonic() < deadline:
        time.sleep(0.05)
        leftover = [p for p in live_children() if p.pid not in before]
    assert not leftover, f"worker processes left alive: {[p.pid for p in leftover]}"
