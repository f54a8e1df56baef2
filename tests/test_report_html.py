"""The HTML report as text: self-contained, escaped, bounded (the browser test runs it)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources

from amorsize.report import ReportHook, RunRecord, render_html
from amorsize.report.html import page_data
from tests.report_fixtures import play, simulate_run

EVIL = '<img src=x onerror="window.__xss=1">'


def record_of(**kwargs: object) -> RunRecord:
    hook = ReportHook("unused.html")
    observer = play(hook, simulate_run(**kwargs).contexts[:-1])  # type: ignore[arg-type]
    return observer.record


def test_no_outside_references() -> None:
    html = render_html(record_of())
    # every link is an in-page anchor; nothing is loaded from anywhere
    assert re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html) == [
        "#timeline", "#decision", "#curves", "#summary", "#identity"]
    assert "@import" not in html and "url(" not in html
    assert set(re.findall(r"https?://[^\s\"')]+", html)) == {"http://www.w3.org/2000/svg"}


def test_csp_forbids_the_network_and_allows_only_the_inlined_script() -> None:
    html = render_html(record_of())
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src &#x27;none&#x27;" in policy
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"sha256-{digest}" in policy


def test_user_controlled_text_is_escaped_everywhere() -> None:
    record = record_of(function=f"mod:{EVIL}")
    record.errors[0].message = EVIL + "</script>"
    record.errors[0].error_type = EVIL
    record.plans[0].explanation = "reason: " + EVIL
    html = render_html(record)
    assert EVIL not in html
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in html
    # the JSON block cannot be closed early: exactly two script elements end
    assert html.count("</script>") == 2
    block = re.search(r'<script type="application/json" id="amorsize-data">(.*?)</script>',
                      html, flags=re.S)
    assert block is not None and "<" not in block.group(1)
    data = json.loads(block.group(1))
    assert data["errors"][0]["message"] == EVIL + "</script>"


def test_fixed_code_is_small() -> None:
    assets = resources.files("amorsize.report").joinpath("assets")
    size = sum(len(assets.joinpath(name).read_bytes()) for name in ("report.js", "report.css"))
    assert size < 200_000


def test_sections_and_figures_are_present() -> None:
    html = render_html(record_of())
    for section in ("timeline", "decision", "curves", "summary", "identity"):
        assert f'<section id="{section}">' in html
    assert "decision: process, n_jobs=2, chunksize=20" in html
    assert "Plan revised while the job ran" in html
    assert "items take 30 % longer than sampled" in html
    assert "ValueError" in html and "first estimated speedup" in html


def test_columns_of_bars_match_the_record() -> None:
    record = record_of()
    data = page_data(record)
    bars = data["bars"]
    assert len(bars["id"]) == len(record.chunks)
    assert all(len(column) == len(record.chunks) for column in bars.values())
    assert data["agg"] is None
    assert sorted(bars["f"]).count(1) == 1 and bars["f"].count(2) == 1


def test_past_the_cap_the_report_aggregates_and_says_so() -> None:
    record = record_of(chunks=60)
    html = render_html(record, max_bars=10)
    assert "more than the 10 the report draws one by one" in html
    data = page_data(record, max_bars=10)
    assert data["agg"] is not None and len(data["bars"]["id"]) == 2  # sampled + failed
    assert sum(data["agg"]["chunks"]) == len(record.chunks) - 2


def test_a_run_with_nothing_recorded_still_renders() -> None:
    hook = ReportHook("unused.html")
    pre = simulate_run().contexts[0]
    observer = hook.start_run(pre)
    html = render_html(observer.record)
    assert "status-running" in html and "No errors." in html
