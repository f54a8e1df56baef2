"""How long a big run report takes to open in headless Chromium, and how large it is.

    python -m benchmarks.report_load [--chunks 100000] [--workers 8] [--repeat 5]

A synthetic run of `--chunks` tasks on `--workers` process workers (plus one sampled
chunk in the calling process, a plan revision and one failed task) is fed, event by
event, through the `ReportHook` observer as the core would deliver it; the report and
the Chrome trace are rendered and written, and the report is opened `--repeat` times
from file:// in a fresh tab of Debian's Chromium (/usr/bin/chromium, through
playwright). Measured:

- the observer's cost per chunk event (it runs synchronously in the calling process);
- render time and size of the HTML report and of the Chrome trace;
- load time: from the tab's navigation to the report script's last line (it sets
  `data-rendered` on <html> after drawing the timeline and the curves), read from the
  page's own clock (`performance.now()`), and the same seen from outside (goto() until
  the attribute is seen); medians of the repeats.

The same is done for a run just under the cap of bars drawn one by one
(DEFAULT_MAX_BARS chunks), the heaviest page a report can be. Results go to
docs/report_load.md and docs/report_load.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from amorsize.report import DEFAULT_MAX_BARS, ReportHook, RunRecord, render_chrome_trace
from amorsize.report.html import render_html

DOCS = Path(__file__).resolve().parent.parent / "docs"
T0 = 1_763_712_000.0


class _Optimization(SimpleNamespace):
    def explain(self) -> str:
        return f"decision: process, n_jobs={self.n_jobs}, chunksize={self.chunksize}"


def _recorder(errors: list[str]) -> Callable[[Any], None]:
    """A page-error listener that keeps each error's text in `errors`."""
    return lambda error: errors.append(str(error))


def synthetic_events(chunks: int, workers: int, seed: int = 1) -> list[SimpleNamespace]:
    """PRE_EXECUTE, a sampled chunk, `chunks` pool tasks (one fails), POST_EXECUTE."""
    rng = random.Random(seed)
    opt = _Optimization(executor_type="process", n_jobs=workers, chunksize=10,
                        estimated_speedup=workers * 0.9, reason="synthetic",
                        serial_seconds_estimate=chunks * 0.01 * 0.9,
                        predicted_seconds=chunks * 0.01 / workers)
    common = dict(function="bench:work", execution_id="bench", run_started_at=T0,
                  total_items=10 * chunks + 5, sampled=False, chunk_start_index=None,
                  metadata={})
    events = [SimpleNamespace(event="pre_execute", timestamp=T0 + 0.05, elapsed_time=0.05,
                              optimization=opt, **common)]
    events.append(SimpleNamespace(event="on_chunk_complete", chunk_id=0, chunk_size=5,
                                  worker_id=None, pid=1000, chunk_started_at=T0 + 0.001,
                                  chunk_ended_at=T0 + 0.04, chunk_time=0.039,
                                  timestamp=T0 + 0.05,
                                  **{**common, "sampled": True, "chunk_start_index": 0}))
    free = [T0 + 0.1] * workers
    for k in range(chunks):
        w = min(range(workers), key=free.__getitem__)
        start = free[w] + rng.uniform(0.0002, 0.002)
        end = start + rng.uniform(0.006, 0.014)
        free[w] = end
        fields = dict(chunk_id=k + 1, chunk_size=10, worker_id=w, pid=1001 + w,
                      chunk_started_at=start, chunk_ended_at=end, chunk_time=end - start,
                      timestamp=end + 0.001, **common)
        fields["chunk_start_index"] = 5 + 10 * k
        if k == chunks // 2:
            events.append(SimpleNamespace(event="on_plan_change", timestamp=end,
                                          elapsed_time=end - T0, optimization=opt,
                                          **{**common, "metadata": {"reason": "synthetic"}}))
        if k == chunks - 1:
            events.append(SimpleNamespace(event="on_error", error=None, error_type="ValueError",
                                          error_message="synthetic", error_traceback="tb",
                                          status="error", **fields))
        else:
            events.append(SimpleNamespace(event="on_chunk_complete", **fields))
    end = max(free)
    events.append(SimpleNamespace(event="on_post_execute", timestamp=end,
                                  elapsed_time=end - T0, status="error", **common))
    return events


def record_run(events: list[SimpleNamespace], max_bars: int) -> tuple[RunRecord, float]:
    """Feed the events to a ReportHook observer; return its record and µs per chunk event."""
    hook = ReportHook(trace_path=Path(tempfile.gettempdir()) / "unused-trace.json",
                      max_bars=max_bars)
    observer: Any = hook.start_run(events[0])
    body = events[1:-1]
    started = time.perf_counter()
    for ctx in body:
        getattr(observer, ctx.event)(ctx)
    per_event = (time.perf_counter() - started) / len(body) * 1e6
    observer._done = True  # render here, timed, instead of in on_post_execute
    observer.record.status = "error"
    observer.record.wall_seconds = events[-1].elapsed_time
    return observer.record, per_event


def load_times(path: Path, repeat: int) -> tuple[list[float], list[float], list[float]]:
    """Load times (ms) of `path`, one fresh tab each: script done, first frame after
    it (page clock), and that frame seen from Python."""
    from playwright.sync_api import sync_playwright

    drawn: list[float] = []
    inside: list[float] = []
    outside: list[float] = []
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", _recorder(errors))
                began = time.perf_counter()
                page.goto(path.as_uri(), wait_until="commit")
                page.wait_for_selector("html[data-painted-ms]", state="attached",
                                       timeout=60_000)
                outside.append((time.perf_counter() - began) * 1e3)
                drawn.append(float(page.get_attribute("html", "data-render-ms") or "nan"))
                inside.append(float(page.get_attribute("html", "data-painted-ms") or "nan"))
                if errors:
                    raise RuntimeError(f"the report raised: {errors}")
                context.close()
        finally:
            browser.close()
    return drawn, inside, outside


def measure(chunks: int, workers: int, repeat: int, out_dir: Path) -> dict[str, Any]:
    events = synthetic_events(chunks, workers)
    record, per_event_us = record_run(events, DEFAULT_MAX_BARS)
    started = time.perf_counter()
    html = render_html(record)
    html_s = time.perf_counter() - started
    started = time.perf_counter()
    trace = render_chrome_trace(record)
    trace_s = time.perf_counter() - started
    path = out_dir / f"report-{chunks}.html"
    path.write_text(html, encoding="utf-8")
    drawn, inside, outside = load_times(path, repeat)
    return {
        "chunks": chunks + 1, "workers": workers, "repeats": repeat,
        "aggregated": chunks + 1 > DEFAULT_MAX_BARS,
        "observer_us_per_event": round(per_event_us, 2),
        "html_bytes": len(html.encode("utf-8")), "html_render_s": round(html_s, 3),
        "trace_bytes": len(trace.encode("utf-8")), "trace_render_s": round(trace_s, 3),
        "script_done_ms": [round(v) for v in drawn],
        "load_ms_in_page": [round(v) for v in inside],
        "load_ms_outside": [round(v) for v in outside],
        "script_done_ms_median": round(statistics.median(drawn)),
        "load_ms_in_page_median": round(statistics.median(inside)),
        "load_ms_outside_median": round(statistics.median(outside)),
    }


def write_docs(results: list[dict[str, Any]], chromium: str) -> None:
    DOCS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (DOCS / "report_load.json").write_text(
        json.dumps({"when": stamp, "chromium": chromium, "results": results}, indent=2) + "\n")
    lines = [
        "# Run report: size and load time",
        "",
        f"Measured {stamp} by `python -m benchmarks.report_load` on a shared 2-core VM, "
        f"{chromium}, headless, Python {platform.python_version()}. Load time is from "
        "navigation to the first frame after the report script drew the timeline and "
        "the curves, read from the page's clock ('script done': its last line); "
        "'outside' is goto() until that frame is seen from Python. Medians of "
        f"{results[0]['repeats']} fresh tabs each; all repeats in docs/report_load.json.",
        "",
        "| chunks | drawn as | HTML size | render (Python) | script done | load (page clock) "
        "| load (outside) | Chrome trace | observer per event |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['chunks']:,} | {'aggregated slices' if r['aggregated'] else 'one bar each'} "
            f"| {r['html_bytes'] / 1e6:.2f} MB | {r['html_render_s']:.2f} s "
            f"| {r['script_done_ms_median']} ms | {r['load_ms_in_page_median']} ms "
            f"| {r['load_ms_outside_median']} ms "
            f"| {r['trace_bytes'] / 1e6:.1f} MB | {r['observer_us_per_event']:.1f} \u00b5s |")
    lines += ["", f"Targets: a 100,000-chunk report opens in under 2 s and stays under 10 MB. "
              f"Past {DEFAULT_MAX_BARS:,} chunks the timeline draws each lane's busy share per "
              "time slice instead of one bar per chunk (failed and sampled chunks stay "
              "bars), so the page's size and load time stop growing with the run.", ""]
    (DOCS / "report_load.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable = shutil.which("chromium") or "/usr/bin/chromium"
        browser = playwright.chromium.launch(executable_path=executable)
        chromium = f"Chromium {browser.version}"
        browser.close()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for chunks in (DEFAULT_MAX_BARS - 1, args.chunks):
            result = measure(chunks, args.workers, args.repeat, Path(tmp))
            print(json.dumps(result))
            results.append(result)
    if not args.no_docs:
        write_docs(results, chromium)


if __name__ == "__main__":
    main()
