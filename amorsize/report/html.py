"""Render a `RunRecord` as one self-contained HTML page.

The page needs nothing but itself: the style sheet and the script (package data in
`assets/`) are inlined, the run's figures travel in a JSON block, and a
Content-Security-Policy forbids every network request and any script but the one
inlined (by hash). Text sections are rendered here, escaped; the script draws the
timeline and the curves as SVG from the JSON, putting data into the page only as
text. Function names, error messages and tracebacks are the user's: never markup.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from typing import Any, Optional

from amorsize.report import views
from amorsize.report.model import RunRecord

_FLAG_SAMPLED = 1
_FLAG_FAILED = 2


@cache
def _asset(name: str) -> str:
    """The text of a fixed asset shipped in amorsize/report/assets."""
    return resources.files("amorsize.report").joinpath("assets").joinpath(name).read_text("utf-8")


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element early or open a comment in it."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _num(value: Optional[float], digits: int = 6) -> Optional[float]:
    """A finite float rounded for the page, or None."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def fmt_seconds(seconds: Optional[float]) -> str:
    """1.23 s, 45.6 ms, 789 µs; an en dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "\u2013"
    if seconds == 0:
        return "0 s"
    a = abs(seconds)
    if a >= 100:
        return f"{seconds:.0f} s"
    if a >= 1:
        return f"{seconds:.2f} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} \u00b5s"


def _speedup(value: Optional[float]) -> str:
    return "\u2013" if value is None or not math.isfinite(value) else f"{value:.2f}\u00d7"


def _percent(value: Optional[float]) -> str:
    return "\u2013" if value is None or not math.isfinite(value) else f"{value * 100:.0f} %"


def _minibar(share: float, error: bool = False) -> str:
    """A small horizontal bar (SVG attributes only: the CSP allows no inline styles)."""
    width = max(0.0, min(1.0, share)) * 120
    cls = "fg err" if error else "fg"
    return (f'<svg class="minibar" width="120" height="10" aria-hidden="true">'
            f'<rect class="bg" width="120" height="10"/>'
            f'<rect class="{cls}" width="{width:.1f}" height="10"/></svg>')


def _figure(value: str, label: str) -> str:
    return f'<div class="figure"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


# ---------------------------------------------------------------------- data block


def page_data(record: RunRecord, max_bars: int = views.DEFAULT_MAX_BARS,
              timeline: Optional[views.Timeline] = None) -> dict[str, Any]:
    """What the script draws: lanes, bars (columns), aggregated cells, curves."""
    lanes = views.lanes(record)
    index = {lane.worker_id: lane.index for lane in lanes}
    if timeline is None:
        timeline = views.timeline(record, max_bars)
    t0 = record.run_started_at
    bars: dict[str, list[Any]] = {k: [] for k in ("id", "lane", "s", "d", "n", "f", "x", "p",
                                                  "e")}
    for chunk in timeline.bars:
        bars["id"].append(chunk.chunk_id)
        bars["lane"].append(index.get(chunk.worker_id, 0))
        bars["s"].append(_num(chunk.started_at - t0) or 0.0)
        bars["d"].append(_num(chunk.duration) or 0.0)
        bars["n"].append(chunk.size)
        bars["f"].append((_FLAG_SAMPLED if chunk.sampled else 0)
                         | (_FLAG_FAILED if chunk.failed else 0))
        bars["x"].append(-1 if chunk.start_index is None else chunk.start_index)
        bars["p"].append(-1 if chunk.pid is None else chunk.pid)
        bars["e"].append(-1 if chunk.error is None else chunk.error)
    agg = None
    if timeline.slice_seconds is not None:
        cells = timeline.cells
        agg = {"width": _num(timeline.slice_seconds, 9), "lane": [c.lane for c in cells],
               "slice": [c.slice for c in cells], "busy": [round(c.busy, 3) for c in cells],
               "chunks": [c.chunks for c in cells], "items": [c.items for c in cells]}
    curves = views.curves(record)
    return {
        "span": _num(views.span(record)),
        "lanes": [{"label": lane.label, "pid": lane.pid} for lane in lanes],
        "bars": bars,
        "agg": agg,
        "errors": [{"type": e.error_type, "message": e.message, "traceback": e.traceback}
                   for e in record.errors],
        "revisions": [{"t": _num(p.elapsed)} for p in record.plans[1:]],
        "curves": {"t": [_num(t) for t in curves.times], "done": curves.items_done,
                   "tput": [_num(v, 3) for v in curves.throughput],
                   "window": _num(curves.window_seconds, 9)},
        "predicted": [{"label": p.label, "t0": _num(p.t0), "n0": p.n0, "t1": _num(p.t1),
                       "n1": p.n1} for p in views.predictions(record)],
        "total": record.total_items,
    }


# ---------------------------------------------------------------------- sections


def _header(record: RunRecord) -> str:
    ident = record.identity
    started = datetime.fromtimestamp(record.run_started_at).astimezone()
    plan = record.final_plan
    decided = (f"{plan.executor_type}, n_jobs={plan.n_jobs}, chunksize={plan.chunksize}"
               if plan else "no plan recorded")
    status = record.status if record.status in ("success", "error", "cancelled") else "running"
    return (
        f'<header><h1>amorsize run <code>{escape(ident.function)}</code>'
        f'<span class="status status-{status}">{escape(record.status)}</span></h1>'
        f'<div class="sub">started {escape(started.isoformat(timespec="seconds"))} \u00b7 '
        f"wall time {escape(fmt_seconds(record.wall))} \u00b7 {escape(decided)}</div>"
        '<nav><a href="#timeline">Timeline</a><a href="#decision">Decision</a>'
        '<a href="#curves">Curves</a><a href="#summary">Summary</a>'
        '<a href="#identity">Identity</a></nav></header>'
    )


def _timeline(record: RunRecord, timeline: views.Timeline) -> str:
    max_bars = timeline.max_bars
    notes = []
    if timeline.slice_seconds is not None:
        notes.append(
            f"This run has {record.chunks_seen:,} chunks, more than the {max_bars:,} the "
            f"report draws one by one: {timeline.aggregated_chunks:,} ordinary chunks are "
            f"shown as each lane's busy share per {fmt_seconds(timeline.slice_seconds)} "
            "slice (darker: busier); failed and sampled chunks are still drawn one by one. "
            "The Chrome trace holds every chunk."
        )
    if record.chunks_dropped:
        notes.append(
            f"Only the first {len(record.chunks):,} chunks were kept "
            f"({record.chunks_dropped:,} more were counted in the summary only)."
        )
    note_html = "".join(f'<p class="note cap">{escape(n)}</p>' for n in notes)
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        '<p class="note">One lane per worker and one for the calling process; each bar is a '
        "chunk at the start and end its worker measured; grey is idle. Hover a bar for its "
        "figures, click it for details (a failed chunk shows its traceback). Wheel or the "
        "buttons zoom, drag pans, double-click resets.</p>"
        f"{note_html}"
        '<div class="legend"><span><i class="k-chunk"></i>chunk</span>'
        '<span><i class="k-sampled"></i>sampled while deciding</span>'
        '<span><i class="k-failed"></i>failed</span><span><i class="k-idle"></i>idle</span>'
        '<span><i class="k-rev"></i>plan revised</span></div>'
        '<div class="controls"><button type="button" id="tl-in">zoom in</button>'
        '<button type="button" id="tl-out">zoom out</button>'
        '<button type="button" id="tl-reset">reset</button><span id="tl-zoom"></span></div>'
        '<div class="tl"><div class="tl-labels" id="tl-labels"></div>'
        '<div class="tl-plot" id="tl-plot"></div><div class="tl-axis" id="tl-axis"></div>'
        '<div class="tip" id="tl-tip"></div></div>'
        '<div class="detail" id="tl-detail"></div></section>'
    )


def _decision(record: RunRecord) -> str:
    first, final = record.first_plan, record.final_plan
    figures = [_figure(_speedup(record.first_estimated_speedup), "first estimated speedup")]
    if len(record.plans) > 1:
        figures.append(_figure(_speedup(record.final_estimated_speedup),
                               "final estimated speedup"))
    figures.append(_figure(_speedup(record.actual_speedup), "achieved speedup"))
    parts = ['<section id="decision"><h2>Decision</h2>',
             f'<div class="figures">{"".join(figures)}</div>']
    if first is None:
        parts.append('<p class="note">No decision was recorded for this run.</p>')
    else:
        parts.append(f'<pre class="explain">{escape(first.explanation or first.reason)}</pre>')
    if final is not None and len(record.plans) > 1:
        rows = "".join(
            f"<tr><td>{n}</td><td>{escape(fmt_seconds(p.elapsed))}</td>"
            f"<td>{escape(p.executor_type)}</td><td class=num>{p.n_jobs}</td>"
            f"<td class=num>{p.chunksize}</td><td class=num>{_speedup(p.estimated_speedup)}</td>"
            f"<td>{escape(p.change_reason or p.reason)}</td></tr>"
            for n, p in enumerate(record.plans[1:], start=1)
        )
        parts.append(
            "<h3>Plan revised while the job ran</h3><table><tr><th>#</th><th>at</th>"
            "<th>executor</th><th>n_jobs</th><th>chunksize</th><th>estimated speedup</th>"
            f"<th>why</th></tr>{rows}</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _curves() -> str:
    return (
        '<section id="curves"><h2>Curves</h2><p class="note">From the chunk ends the workers '
        "measured. The dashed line is the optimizer's prediction, from the items done when "
        "it decided to all items done; orange marks a revised plan.</p>"
        '<div class="charts"><div class="chart"><h3>Throughput over time</h3>'
        '<div id="chart-throughput"></div></div><div class="chart">'
        '<h3>Items done over time, against the prediction</h3><div id="chart-items"></div>'
        "</div></div></section>"
    )


def _summary(record: RunRecord) -> str:
    wall = record.wall
    busy = record.total_busy_seconds
    throughput = record.items_completed / wall if wall > 0 else None
    figures = "".join([
        _figure(fmt_seconds(wall), "wall time"),
        _figure(fmt_seconds(busy), "busy time, all workers"),
        _figure(_percent(views.parallel_efficiency(record)), "parallel efficiency"),
        _figure(f"{record.chunks_seen:,}", "tasks"),
        _figure(f"{record.items_completed:,}", "items done"
                + (f" of {record.total_items:,}" if record.total_items is not None else "")),
        _figure("\u2013" if throughput is None else f"{throughput:,.1f}", "items / s"),
        _figure(f"{len(record.errors):,}", "errors"),
    ])
    worker_rows = "".join(
        f"<tr><td>{escape(lane.label)}</td><td class=num>{lane.chunks:,}</td>"
        f"<td class=num>{lane.items:,}</td><td class=num>{escape(fmt_seconds(lane.busy_seconds))}"
        f"</td><td class=num>{_percent(lane.busy_seconds / wall if wall > 0 else None)}</td>"
        f"<td>{_minibar(lane.busy_seconds / wall if wall > 0 else 0.0)}</td></tr>"
        for lane in views.lanes(record)
    )
    sizes = views.size_distribution(record)
    most = max((n for _, n in sizes), default=1)
    size_rows = "".join(
        f"<tr><td class=num>{escape(label)}</td><td class=num>{n:,}</td>"
        f"<td>{_minibar(n / most)}</td></tr>" for label, n in sizes
    )
    stats = views.size_stats(record)
    size_note = ("" if stats is None else
                 f'<p class="note">items per task: min {stats[0]:,}, mean {stats[1]:,.1f}, '
                 f"median {stats[2]:,}, max {stats[3]:,}</p>")
    by_type = views.errors_by_type(record)
    if by_type:
        error_rows = "".join(
            f"<tr><td><code>{escape(name)}</code></td><td class=num>{n:,}</td></tr>"
            for name, n in by_type
        )
        error_list = "".join(
            f"<details><summary><code>{escape(e.error_type)}</code>: {escape(e.message)}"
            + (f" (chunk {e.chunk_id})" if e.chunk_id is not None else "")
            + (f", status {escape(e.status)}" if e.status else "")
            + f"</summary><pre>{escape(e.traceback or '(no traceback was reported)')}</pre>"
            "</details>"
            for e in record.errors
        )
        errors = (f"<table><tr><th>error type</th><th>count</th></tr>{error_rows}</table>"
                  f"{error_list}")
    else:
        errors = '<p class="note">No errors.</p>'
    return (
        f'<section id="summary"><h2>Summary</h2><div class="figures">{figures}</div>'
        '<div class="grid"><div><h3>Busy time per worker</h3><table><tr><th>lane</th>'
        "<th>tasks</th><th>items</th><th>busy</th><th>of wall</th><th></th></tr>"
        f"{worker_rows}</table></div><div><h3>Task sizes</h3><table><tr><th>items</th>"
        f"<th>tasks</th><th></th></tr>{size_rows}</table>{size_note}</div></div>"
        f"<h3>Errors by type</h3>{errors}</section>"
    )


def _identity(record: RunRecord) -> str:
    ident = record.identity
    rows = [
        ("function", ident.function),
        ("execution id", ident.execution_id),
        ("amorsize version", ident.amorsize_version),
        ("host", ident.host),
        ("start method", ident.start_method),
        ("cores (usable / physical)",
         f"{ident.cores if ident.cores is not None else '?'} / "
         f"{ident.physical_cores if ident.physical_cores is not None else '?'}"),
        ("Python", ident.python),
        ("calling process pid", "" if ident.pid is None else str(ident.pid)),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
                   for k, v in rows)
    return f'<section id="identity"><h2>Identity</h2><table>{body}</table></section>'


def render_html(record: RunRecord, max_bars: int = views.DEFAULT_MAX_BARS) -> str:
    """The whole report: one HTML document with no outside references."""
    script = _asset("report.js")
    style = _asset("report.css")
    csp = (f"default-src 'none'; script-src {_csp_hash(script)}; "
           f"style-src {_csp_hash(style)}; img-src 'none'; base-uri 'none'; form-action 'none'")
    title = f"amorsize run: {record.identity.function} ({record.status})"
    timeline = views.timeline(record, max_bars)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="amorsize {escape(record.identity.amorsize_version)}">'
        f"<title>{escape(title)}</title><style>{style}</style></head><body>"
        f"{_header(record)}<main>{_timeline(record, timeline)}{_decision(record)}"
        f"{_curves()}{_summary(record)}{_identity(record)}</main>"
        '<script type="application/json" id="amorsize-data">'
        f"{_json_for_script(page_data(record, max_bars, timeline))}</script>"
        f"<script>{script}</script></body></html>\n"
    )
