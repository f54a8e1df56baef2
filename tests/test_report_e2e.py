"""End to end: a real execute() writes a report, opened in Chromium.

These tests run a real job through amorsize.execute(): the run-scoped hooks of the
event contract (`Hook.start_run()` returning a `RunObserver`) and, for the second,
`execute(..., report=PATH)`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from amorsize import HookEvent, HookManager, execute
from amorsize.report import ReportHook
from tests.test_report_browser import assert_clean, browser, open_report  # noqa: F401

FAILING_ITEM = 157


def work(x: int) -> int:
    """A few milliseconds per item; one item raises."""
    if x == FAILING_ITEM:
        raise ValueError(f"item {x} is bad")
    deadline = time.perf_counter() + 0.002
    while time.perf_counter() < deadline:
        pass
    return x * x


def counting_manager() -> tuple[HookManager, Counter[str]]:
    events: Counter[str] = Counter()
    manager = HookManager()
    manager.register(HookEvent.ON_CHUNK_COMPLETE, lambda ctx: events.update(
        ["complete", "sampled" if getattr(ctx, "sampled", False) else "pool"]))
    manager.register(HookEvent.ON_ERROR, lambda ctx: events.update(["error"]))
    return manager, events


def test_real_failed_process_run(open_report: Any, tmp_path: Path,  # noqa: F811
                                 no_leftover_children: None) -> None:
    manager, events = counting_manager()
    report = ReportHook(tmp_path / "run.html", trace_path=tmp_path / "run.json")
    manager.add(report)
    with pytest.raises(ValueError, match="is bad"):
        execute(work, range(400), manager, executor_type="process", n_jobs=2, chunksize=10)
    loaded = open_report(tmp_path / "run.html")
    page = loaded.page
    assert_clean(loaded)
    assert page.locator("rect.chunk:not(.failed)").count() == events["complete"]
    assert page.locator("rect.chunk.failed").count() == 1
    assert page.locator("rect.chunk.sampled").count() == events["sampled"]
    assert page.locator("#tl-labels > div").count() >= 3  # calling process + 2 workers
    assert "decision: process, n_jobs=2" in page.inner_text("#decision pre.explain")
    page.locator("rect.chunk.failed").click()
    assert "is bad" in page.inner_text("#tl-detail pre.traceback")
    trace = json.loads((tmp_path / "run.json").read_text())
    chunks = [e for e in trace["traceEvents"] if e["ph"] == "X" and "chunk" in e["cat"]]
    assert len(chunks) == events["complete"] + 1


def test_report_argument_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.html"
    results = execute(lambda x: x + 1, range(50), report=str(path))  # type: ignore[call-arg]
    assert results == list(range(1, 51))
    assert "status-success" in path.read_text()
