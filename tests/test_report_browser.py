"""The HTML report in a real headless Chromium (Debian's /usr/bin/chromium).

Playwright drives the browser the system installed (`executable_path`); nothing
downloads a browser. scripts/test.sh installs the `chromium` package when it is
missing; a missing browser fails these tests, it never skips them.

Set AMORSIZE_WRITE_DOCS=1 to have the test also write docs/report.png, the
screenshot the README shows.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from amorsize.report import ReportHook
from tests.report_fixtures import TRACEBACK, play, simulate_run

DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "report.png"
FAILED_RGB = (212, 42, 42)  # --failed in report.css


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium not found on PATH; install the Debian package `chromium` "
                    "(scripts/test.sh does it when run as root)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('playwright is missing: pip install -e ".[test]"', pytrace=False)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class Loaded:
    """A report open in a tab, with everything the page said or asked for."""

    page: Any
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_report(browser: Any) -> Iterator[Any]:
    contexts = []

    def load(path: Path) -> Loaded:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        loaded = Loaded(page, path.resolve().as_uri())
        page.on("console", lambda m: m.type == "error" and loaded.console_errors.append(m.text))
        page.on("pageerror", lambda e: loaded.page_errors.append(str(e)))
        context.on("request", lambda r: loaded.requests.append(r.url))
        page.goto(loaded.url)
        page.wait_for_selector("html[data-rendered='1']", state="attached")
        return loaded

    yield load
    for context in contexts:
        context.close()


def assert_clean(loaded: Loaded) -> None:
    """No console error, no uncaught exception, no request but the file itself."""
    assert loaded.console_errors == []
    assert loaded.page_errors == []
    assert [url for url in loaded.requests if url != loaded.url] == []


def image_stats(browser: Any, png: bytes) -> dict[str, Any]:
    """Colour statistics of a PNG, decoded by the browser itself (no imaging library)."""
    page = browser.new_page()
    try:
        return page.evaluate(
            """async ([b64, red]) => {
                const img = new Image();
                img.src = "data:image/png;base64," + b64;
                await img.decode();
                const canvas = document.createElement("canvas");
                canvas.width = img.width; canvas.height = img.height;
                const g = canvas.getContext("2d");
                g.drawImage(img, 0, 0);
                const d = g.getImageData(0, 0, img.width, img.height).data;
                const counts = new Map();
                let reds = 0, n = 0;
                for (let i = 0; i < d.length; i += 4) {
                    const key = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
                    counts.set(key, (counts.get(key) || 0) + 1);
                    n++;
                    if (Math.abs(d[i] - red[0]) < 8 && Math.abs(d[i + 1] - red[1]) < 8
                        && Math.abs(d[i + 2] - red[2]) < 8) { reds++; }
                }
                let dominant = 0;
                counts.forEach((v) => { dominant = Math.max(dominant, v); });
                return {colors: counts.size, dominant: dominant / n, reds: reds,
                        width: img.width, height: img.height};
            }""",
            [base64.b64encode(png).decode(), list(FAILED_RGB)],
        )
    finally:
        page.close()


def test_report_of_a_failed_two_worker_run(browser: Any, open_report: Any,
                                           tmp_path: Path) -> None:
    run = simulate_run(workers=2, chunks=24)
    completes = sum(1 for ctx in run.contexts if ctx.event == "on_chunk_complete")
    path = tmp_path / "run.html"
    play(ReportHook(path), run.contexts)
    loaded = open_report(path)
    page = loaded.page
    assert_clean(loaded)

    # one lane per worker and one for the calling process
    assert page.locator("#tl-labels > div").count() == 3
    # one bar per ON_CHUNK_COMPLETE, plus the failed task's bar, marked
    assert page.locator("rect.chunk:not(.failed)").count() == completes
    failed = page.locator("rect.chunk.failed")
    assert failed.count() == 1
    assert failed.get_attribute("data-chunk-id") == str(run.failed_chunk_id)
    fill = failed.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb({}, {}, {})".format(*FAILED_RGB)
    assert page.locator("rect.chunk.sampled").count() == len(run.sampled_chunk_ids)

    # the decision and its explanation
    explain = page.inner_text("#decision pre.explain")
    assert "decision: process, n_jobs=2, chunksize=20" in explain
    assert "Plan revised while the job ran" in page.inner_text("#decision")

    # hovering a bar names the chunk, its size, its worker's pid and its times
    page.locator("rect.chunk:not(.failed)").nth(3).hover()
    tip = page.locator("#tl-tip")
    assert tip.is_visible()
    assert "chunk" in tip.inner_text() and "pid" in tip.inner_text()
    assert "start" in tip.inner_text() and "items" in tip.inner_text()

    # clicking the failed bar shows its traceback, as text
    failed.click()
    traceback_text = page.inner_text("#tl-detail pre.traceback")
    assert traceback_text.strip() == TRACEBACK.strip()
    assert page.evaluate("window.__xss") is None

    # the curves were drawn
    assert page.locator("#chart-items path.line").count() == 1
    assert page.locator("#chart-items path.pred").count() == 2
    assert page.locator("#chart-throughput path.line").count() == 1
    assert_clean(loaded)

    png = page.screenshot(full_page=True)
    stats = image_stats(browser, png)
    assert stats["colors"] > 50 and stats["dominant"] < 0.9, stats
    assert stats["reds"] > 100, stats  # the failed bar (and its traceback heading) show
    if os.environ.get("AMORSIZE_WRITE_DOCS") == "1":
        DOCS_SCREENSHOT.write_bytes(png)


def test_hostile_names_and_messages_stay_text(open_report: Any, tmp_path: Path) -> None:
    evil = '<img src=x onerror="window.__xss=1">'
    run = simulate_run(function=f"mod:{evil}")
    for ctx in run.contexts:
        if ctx.event == "on_error":
            ctx.error_type = evil
            ctx.error_message = evil
    path = tmp_path / "evil.html"
    play(ReportHook(path), run.contexts)
    loaded = open_report(path)
    page = loaded.page
    page.locator("rect.chunk.failed").click()
    assert_clean(loaded)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert evil in page.inner_text("header h1")
    assert evil in page.inner_text("#tl-detail")


def test_past_the_cap_lanes_show_aggregated_slices(open_report: Any, tmp_path: Path) -> None:
    run = simulate_run(workers=3, chunks=90)
    path = tmp_path / "big.html"
    play(ReportHook(path, max_bars=10), run.contexts)
    loaded = open_report(path)
    page = loaded.page
    assert_clean(loaded)
    assert page.locator("rect.agg").count() > 0
    assert page.locator("rect.chunk").count() == 2  # the sampled and the failed chunk
    assert "more than the 10 the report draws one by one" in page.inner_text("#timeline")
    page.locator("rect.agg").first.hover()
    assert "busy" in page.inner_text("#tl-tip")


def test_zoom_and_reset(open_report: Any, tmp_path: Path) -> None:
    path = tmp_path / "run.html"
    play(ReportHook(path), simulate_run(fail=False).contexts)
    loaded = open_report(path)
    page = loaded.page
    main = page.locator("#tl-plot > svg")

    def width() -> float:
        return float(main.get_attribute("viewBox").split()[2])

    full = width()
    page.click("#tl-in")
    assert width() == pytest.approx(full / 2)
    assert "showing" in page.inner_text("#tl-zoom")
    page.click("#tl-reset")
    assert width() == pytest.approx(full)
    assert_clean(loaded)
