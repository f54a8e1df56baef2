"""See a run without a stack: a self-contained HTML run report and a Chrome trace.

`ReportHook("run.html", trace_path="run.json")` writes both when a run ends. The
renderers work from a plain `RunRecord` (see `model`), so a record built by hand
renders the same way.
"""

from amorsize.report.chrome_trace import render_chrome_trace, trace_events
from amorsize.report.hook import ReportHook, ReportObserver
from amorsize.report.html import render_html
from amorsize.report.model import (
    DEFAULT_MAX_CHUNKS,
    ChunkRecord,
    ErrorRecord,
    Identity,
    PlanRecord,
    RunRecord,
    WorkerRecord,
)
from amorsize.report.views import DEFAULT_MAX_BARS

__all__ = [
    "DEFAULT_MAX_BARS",
    "DEFAULT_MAX_CHUNKS",
    "ChunkRecord",
    "ErrorRecord",
    "Identity",
    "PlanRecord",
    "ReportHook",
    "ReportObserver",
    "RunRecord",
    "WorkerRecord",
    "render_chrome_trace",
    "render_html",
    "trace_events",
]
