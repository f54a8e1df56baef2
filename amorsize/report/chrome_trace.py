"""A run as Chrome trace-event JSON, for chrome://tracing and Perfetto (ui.perfetto.dev).

The trace is one process (the run) with one thread per timeline lane: the calling
process first, then each pool worker, plus a thread for execute() itself. Every
chunk kept in the record is one complete ("X") event at the times its worker
measured, in microseconds since execute() began (`otherData.run_started_at` holds that
instant as Unix time). Unlike the HTML report, nothing is aggregated: Perfetto handles
millions of events.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from amorsize.report import views
from amorsize.report.model import ChunkRecord, RunRecord

# Thread ids: execute() itself, then lane i at LANE_TID + i.
RUN_TID = 0
LANE_TID = 1
# Points of the "items done" counter track.
COUNTER_POINTS = 120


def _us(seconds: float) -> float:
    """Seconds to trace microseconds, rounded to the nanosecond."""
    return round(seconds * 1e6, 3)


def _meta(pid: int, tid: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "pid": pid, "tid": tid, "name": name, "args": args}


def _chunk_event(record: RunRecord, chunk: ChunkRecord, pid: int, tid: int) -> dict[str, Any]:
    """One complete event at the worker-measured start and duration of `chunk`."""
    category = "chunk"
    args: dict[str, Any] = {
        "chunk_id": chunk.chunk_id,
        "items": chunk.size,
        "worker_id": chunk.worker_id,
        "worker_pid": chunk.pid,
        "sampled": chunk.sampled,
    }
    if chunk.start_index is not None:
        args["first_item_index"] = chunk.start_index
    if chunk.sampled:
        category += ",sampled"
    if chunk.error is not None:
        category += ",failed"
        error = record.errors[chunk.error]
        args.update(error_type=error.error_type, error_message=error.message,
                    traceback=error.traceback)
    return {
        "ph": "X",
        "cat": category,
        "name": f"chunk {chunk.chunk_id}",
        "pid": pid,
        "tid": tid,
        "ts": _us(chunk.started_at - record.run_started_at),
        "dur": _us(chunk.duration),
        "args": args,
    }


def trace_events(record: RunRecord) -> dict[str, Any]:
    """The trace as a JSON-ready dict: {"traceEvents": [...], "otherData": {...}}."""
    pid = record.identity.pid or 1
    lanes = views.lanes(record)
    index = {lane.worker_id: lane.index for lane in lanes}
    final = record.final_plan
    events: list[dict[str, Any]] = [
        _meta(pid, RUN_TID, "process_name", {"name": f"amorsize {record.identity.function}"}),
        _meta(pid, RUN_TID, "thread_name", {"name": "execute()"}),
        _meta(pid, RUN_TID, "thread_sort_index", {"sort_index": RUN_TID}),
    ]
    for lane in lanes:
        tid = LANE_TID + lane.index
        events.append(_meta(pid, tid, "thread_name", {"name": lane.label}))
        events.append(_meta(pid, tid, "thread_sort_index", {"sort_index": tid}))
    events.append({
        "ph": "X", "cat": "run", "name": "execute", "pid": pid, "tid": RUN_TID, "ts": 0,
        "dur": _us(record.wall),
        "args": {
            "function": record.identity.function,
            "status": record.status,
            "executor": final.executor_type if final else None,
            "n_jobs": final.n_jobs if final else None,
            "chunksize": final.chunksize if final else None,
            "total_items": record.total_items,
        },
    })
    for number, plan in enumerate(record.plans):
        events.append({
            "ph": "i", "s": "p", "cat": "plan", "pid": pid, "tid": RUN_TID,
            "name": "plan" if number == 0 else "plan revised", "ts": _us(plan.elapsed),
            "args": {"executor": plan.executor_type, "n_jobs": plan.n_jobs,
                     "chunksize": plan.chunksize,
                     "estimated_speedup": _number(plan.estimated_speedup),
                     "reason": plan.change_reason or plan.reason},
        })
    for chunk in record.chunks:
        tid = LANE_TID + index.get(chunk.worker_id, 0)
        events.append(_chunk_event(record, chunk, pid, tid))
    for error in record.errors:
        if error.chunk_id is None and error.timestamp is not None:
            events.append({
                "ph": "i", "s": "p", "cat": "error", "pid": pid, "tid": RUN_TID,
                "name": error.error_type, "ts": _us(error.timestamp - record.run_started_at),
                "args": {"message": error.message, "status": error.status},
            })
    curve = views.curves(record, COUNTER_POINTS)
    events.append({"ph": "C", "name": "items done", "pid": pid, "tid": RUN_TID, "ts": 0,
                   "args": {"items": 0}})
    for t, done in zip(curve.times, curve.items_done, strict=True):
        events.append({"ph": "C", "name": "items done", "pid": pid, "tid": RUN_TID,
                       "ts": _us(t), "args": {"items": done}})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "function": record.identity.function,
            "execution_id": record.identity.execution_id,
            "amorsize_version": record.identity.amorsize_version,
            "run_started_at": record.run_started_at,
            "status": record.status,
            "chunks": record.chunks_seen,
            "chunks_left_out": record.chunks_dropped,
        },
    }


def _number(value: Optional[float]) -> Optional[float]:
    """JSON has no NaN or infinity: those become null."""
    return value if value is not None and math.isfinite(value) else None


def render_chrome_trace(record: RunRecord) -> str:
    """The trace as compact JSON text."""
    return json.dumps(trace_events(record), separators=(",", ":"), allow_nan=False,
                      default=str)
