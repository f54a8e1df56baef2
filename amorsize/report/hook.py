"""`ReportHook`: write an HTML run report (and a Chrome trace) when a run ends.

This is the only module that reads hook contexts. `ReportHook.start_run()` is called
at PRE_EXECUTE and returns a `ReportObserver` for that run alone; the observer turns
each event into a call on a plain `RunRecord`, and at POST_EXECUTE (success, error or
cancel) renders the record and writes the file(s). Reporting must never disturb the
run: every method catches and logs its own failures, including a file that cannot be
written.

Fields are read from the typed `HookContext` fields first; the `metadata` keys that
earlier releases used are read when a typed field is missing, so the adapter also
works from events built by hand.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import platform
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

from amorsize import hooks
from amorsize.hooks import Hook
from amorsize.report.chrome_trace import render_chrome_trace
from amorsize.report.html import render_html
from amorsize.report.model import (
    DEFAULT_MAX_CHUNKS,
    ChunkRecord,
    ErrorRecord,
    Identity,
    PlanRecord,
    RunRecord,
)
from amorsize.report.views import DEFAULT_MAX_BARS

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
_F = TypeVar("_F", bound=Callable[..., None])


def _never_raises(method: _F) -> _F:
    """Serialise the observer's methods (cheap, uncontended) and log and swallow any
    exception: a report must never change or stop a run."""

    @functools.wraps(method)
    def wrapper(self: ReportObserver, ctx: Any) -> None:
        try:
            with self._lock:
                method(self, ctx)
        except Exception:
            logger.warning("amorsize report: %s failed; the run goes on", method.__name__,
                           exc_info=True)

    return wrapper  # type: ignore[return-value]


def _field(ctx: Any, name: str) -> Any:
    """Typed field `name`, else the metadata extra of that name, else None."""
    value = getattr(ctx, name, None)
    if value is None:
        metadata = getattr(ctx, "metadata", None)
        if isinstance(metadata, dict):
            value = metadata.get(name)
    return value


def _float(value: Any) -> Optional[float]:
    """A finite float, or None (JSON has no NaN; a report shows '–' instead)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _identity(ctx: Any) -> Identity:
    """Who ran what where; each figure that cannot be read is left empty."""
    from amorsize import __version__, system  # lazy: amorsize may import this module

    def attempt(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception:
            return None

    return Identity(
        function=str(_field(ctx, "function") or "?"),
        execution_id=str(_field(ctx, "execution_id") or ""),
        amorsize_version=__version__,
        host=attempt(socket.gethostname) or "",
        # the run's own, where the core says; else the one its optimizer reads too
        start_method=str(_field(ctx, "start_method") or attempt(system.start_method) or ""),
        cores=attempt(system.usable_cores),
        physical_cores=attempt(system.physical_cores),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        pid=os.getpid(),
    )


def _plan(ctx: Any, elapsed: float, change_reason: Optional[str] = None) -> PlanRecord:
    """The plan in `ctx.optimization` (falling back to the context's own fields)."""
    opt = _field(ctx, "optimization")
    explanation = ""
    if opt is not None and callable(getattr(opt, "explain", None)):
        explanation = str(opt.explain())

    def pick(name: str) -> Any:
        value = getattr(opt, name, None) if opt is not None else None
        return value if value is not None else _field(ctx, name)

    return PlanRecord(
        elapsed=elapsed,
        executor_type=str(pick("executor_type") or "?"),
        n_jobs=_int(pick("n_jobs")) or 0,
        chunksize=_int(pick("chunksize")) or 0,
        estimated_speedup=_float(pick("estimated_speedup")),
        reason=str(pick("reason") or ""),
        explanation=explanation,
        predicted_end=_predicted_end(opt, _float(pick("estimated_speedup")),
                                     revised=change_reason is not None),
        change_reason=change_reason,
    )


def _predicted_end(opt: Any, estimate: Optional[float], revised: bool) -> Optional[float]:
    """When the plan predicts the job done, in seconds since execute() began.

    The one estimated speedup is the whole job serially against the whole execute()
    as planned, so serial estimate / speedup is that plan's predicted wall time; this
    holds for a revised plan too. `predicted_seconds` is the fallback for a first plan
    only: a revision's result object may still carry the first plan's."""
    serial = _float(getattr(opt, "serial_seconds_estimate", None))
    if serial is not None and serial > 0 and estimate is not None and estimate > 0:
        return serial / estimate
    return None if revised else _float(getattr(opt, "predicted_seconds", None))


class ReportObserver(hooks.RunObserver):
    """Fills the `RunRecord` of one run from its events; writes the files at the end.

    Progress is not observed (the publisher builds no context for it): the curves come
    from the chunks' own end times."""

    def __init__(self, hook: ReportHook, ctx: Any) -> None:
        self._lock = threading.Lock()
        started = _float(_field(ctx, "run_started_at"))
        if started is None or started <= 0:  # unset (a context's default is 0.0)
            started = (_float(getattr(ctx, "timestamp", None)) or 0.0) - (
                _float(getattr(ctx, "elapsed_time", None)) or 0.0)
        self.hook = hook
        self.record = RunRecord(identity=_identity(ctx), run_started_at=started,
                                total_items=_int(getattr(ctx, "total_items", None)),
                                max_chunks=hook.max_chunks)
        self.record.add_plan(_plan(ctx, self._elapsed(ctx)))
        self._done = False

    def _elapsed(self, ctx: Any) -> float:
        elapsed = _float(getattr(ctx, "elapsed_time", None))
        if elapsed is None:
            elapsed = (_float(getattr(ctx, "timestamp", None)) or 0.0) - self.record.run_started_at
        return max(0.0, elapsed)

    def _chunk(self, ctx: Any, error: Optional[int] = None) -> ChunkRecord:
        ended = _float(_field(ctx, "chunk_ended_at"))
        if ended is None:
            ended = _float(getattr(ctx, "timestamp", None)) or self.record.run_started_at
        started = _float(_field(ctx, "chunk_started_at"))
        if started is None:
            started = ended - (_float(getattr(ctx, "chunk_time", None)) or 0.0)
        return ChunkRecord(
            chunk_id=_int(getattr(ctx, "chunk_id", None)) or 0,
            worker_id=_int(getattr(ctx, "worker_id", None)),
            pid=_int(_field(ctx, "pid")),
            size=_int(getattr(ctx, "chunk_size", None)) or 0,
            started_at=started,
            ended_at=max(started, ended),
            start_index=_int(getattr(ctx, "chunk_start_index", None)),
            sampled=bool(_field(ctx, "sampled")),
            error=error,
        )

    @_never_raises
    def on_worker_start(self, ctx: Any) -> None:
        """A pool worker was heard from."""
        self.record.worker_started(_int(getattr(ctx, "worker_id", None)), _int(_field(ctx, "pid")),
                                   _float(_field(ctx, "worker_started_at")))

    @_never_raises
    def on_chunk_complete(self, ctx: Any) -> None:
        """A task finished: one bar."""
        self.record.add_chunk(self._chunk(ctx))

    @_never_raises
    def on_plan_change(self, ctx: Any) -> None:
        """The plan was revised mid-run."""
        metadata = getattr(ctx, "metadata", None)
        reason = metadata.get("reason") if isinstance(metadata, dict) else None
        self.record.add_plan(_plan(ctx, self._elapsed(ctx), str(reason or "plan revised")))

    @_never_raises
    def on_error(self, ctx: Any) -> None:
        """A failure; a failed task also becomes a (red) bar."""
        error = getattr(ctx, "error", None)
        error_type = _field(ctx, "error_type") or (
            type(error).__name__ if error is not None else "Error")
        message = getattr(ctx, "error_message", None)
        if message is None:
            message = str(error) if error is not None else ""
        chunk_id = _int(getattr(ctx, "chunk_id", None))
        index = self.record.add_error(ErrorRecord(
            error_type=str(error_type), message=str(message),
            traceback=getattr(ctx, "error_traceback", None),
            timestamp=_float(getattr(ctx, "timestamp", None)),
            status=_field(ctx, "status"), chunk_id=chunk_id,
            worker_id=_int(getattr(ctx, "worker_id", None))))
        if chunk_id is not None:
            self.record.add_chunk(self._chunk(ctx, error=index))

    @_never_raises
    def on_worker_end(self, ctx: Any) -> None:
        """A worker's part is over."""
        self.record.worker_ended(_int(getattr(ctx, "worker_id", None)),
                                 _float(getattr(ctx, "timestamp", None)))

    @_never_raises
    def on_post_execute(self, ctx: Any) -> None:
        """The run ended (success, error or cancel): finish the record, write the files."""
        if self._done:
            return
        self._done = True
        record = self.record
        record.status = str(_field(ctx, "status") or "success")
        record.ended_at = _float(getattr(ctx, "timestamp", None))
        record.wall_seconds = _float(getattr(ctx, "elapsed_time", None))
        total = _int(getattr(ctx, "total_items", None))
        if total is not None:
            record.total_items = total
        completed = _int(getattr(ctx, "items_completed", None))
        if completed is not None and completed >= record.items_completed:
            record.items_completed = completed
        record.results_count = _int(getattr(ctx, "results_count", None))
        first = _float(_field(ctx, "first_estimated_speedup"))
        if first is not None:
            record.first_estimated_speedup = first
        final = _float(_field(ctx, "estimated_speedup"))
        if final is not None:
            record.final_estimated_speedup = final
        record.actual_speedup = _float(_field(ctx, "actual_speedup"))
        record.parallel_efficiency = _float(_field(ctx, "parallel_efficiency"))
        record.busy_seconds = _float(_field(ctx, "busy_seconds"))
        self.hook._finished(record)


class ReportHook(Hook):
    """Write a self-contained HTML report of each run to `path`, and optionally a
    Chrome trace (chrome://tracing, Perfetto) to `trace_path`.

    Files are written when the run ends, whether it succeeded, failed or was
    cancelled, replacing any earlier file atomically; a later run with the same hook
    overwrites them. A file that cannot be written is logged, never raised. The
    report draws at most `max_bars` chunk bars one by one (past that, ordinary chunks
    are aggregated per time slice and the report says so); at most `max_chunks`
    chunks are kept in memory per run. `last_record` holds the last finished run.
    """

    def __init__(
        self,
        path: Optional[PathLike] = None,
        trace_path: Optional[PathLike] = None,
        *,
        max_bars: int = DEFAULT_MAX_BARS,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
    ) -> None:
        if path is None and trace_path is None:
            raise ValueError("ReportHook needs a report path, a trace_path, or both")
        if max_bars < 1 or max_chunks < 1:
            raise ValueError("max_bars and max_chunks must be at least 1")
        self.path = Path(path) if path is not None else None
        self.trace_path = Path(trace_path) if trace_path is not None else None
        self.max_bars = max_bars
        self.max_chunks = max_chunks
        self.last_record: Optional[RunRecord] = None

    def start_run(self, ctx: Any) -> ReportObserver:
        """Called at PRE_EXECUTE: a fresh observer (and record) for this run."""
        return ReportObserver(self, ctx)

    def _finished(self, record: RunRecord) -> None:
        self.last_record = record
        if self.path is not None:
            _write(self.path, lambda: render_html(record, self.max_bars))
        if self.trace_path is not None:
            _write(self.trace_path, lambda: render_chrome_trace(record))


def _write(path: Path, render: Callable[[], str]) -> None:
    """Render and write atomically (a reader never sees half a file); log failures."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        text = render()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except Exception:
        logger.warning("amorsize report: could not write %s", path, exc_info=True)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
