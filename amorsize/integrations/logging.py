"""Structured log records from hook events, for `logging` and JSON log formatters.

`LoggingHook` writes one record per PRE_EXECUTE, ON_PLAN_CHANGE, POST_EXECUTE and
ON_ERROR, and at DEBUG one per finished chunk. The figures go in `extra=` under `amorsize_*` keys
(never clashing with LogRecord's own attributes), so a JSON formatter picks them up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Union

from amorsize.hooks import Hook, HookCallback, HookContext, HookEvent

DEFAULT_LOGGER = "amorsize"


def _number(value: Any) -> Any:
    """Return None for NaN/inf so JSON formatters write valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class LoggingHook(Hook):
    """Log the run through `logger` (a Logger, a logger name, or "amorsize" if None).

    Start and end are logged at `level`; errors at ERROR (a cancelled run at
    WARNING); chunks at DEBUG, built only when the logger is enabled for DEBUG.
    """

    def __init__(
        self, logger: Union[logging.Logger, str, None] = None, level: int = logging.INFO
    ) -> None:
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or DEFAULT_LOGGER)
        if not isinstance(logger, logging.Logger):
            raise TypeError(
                f"logger must be a logging.Logger or a name, got {type(logger).__name__}"
            )
        if not isinstance(level, int) or isinstance(level, bool):
            raise TypeError(f"level must be a logging level int, got {level!r}")
        self.logger = logger
        self.level = level

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """The events this hook logs."""
        return {
            HookEvent.PRE_EXECUTE: self.on_pre_execute,
            HookEvent.ON_CHUNK_COMPLETE: self.on_chunk_complete,
            HookEvent.ON_PLAN_CHANGE: self.on_plan_change,
            HookEvent.ON_ERROR: self.on_error,
            HookEvent.POST_EXECUTE: self.on_post_execute,
        }

    @staticmethod
    def _common(ctx: HookContext) -> dict[str, Any]:
        return {
            "amorsize_event": ctx.event.value,
            "amorsize_execution_id": ctx.execution_id,
            "amorsize_function": ctx.function,
            "amorsize_n_jobs": ctx.n_jobs,
            "amorsize_chunksize": ctx.chunksize,
            "amorsize_total_items": ctx.total_items,
            "amorsize_elapsed_seconds": ctx.elapsed_time,
        }

    def on_pre_execute(self, ctx: HookContext) -> None:
        """One record: the decision."""
        if not self.logger.isEnabledFor(self.level):
            return
        extra = self._common(ctx)
        meta = ctx.metadata
        extra.update(
            amorsize_executor_type=ctx.executor_type,
            amorsize_estimated_speedup=_number(ctx.estimated_speedup),
            amorsize_optimization_seconds=meta.get("optimization_seconds"),
            amorsize_reason=meta.get("reason"),
        )
        self.logger.log(
            self.level,
            "amorsize %s: starting %s n_jobs=%d chunksize=%d items=%s",
            extra["amorsize_function"], extra["amorsize_executor_type"], ctx.n_jobs,
            ctx.chunksize, "unknown" if ctx.total_items is None else ctx.total_items,
            extra=extra,
        )

    def on_chunk_complete(self, ctx: HookContext) -> None:
        """One DEBUG record per finished chunk."""
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        extra = self._common(ctx)
        extra.update(
            amorsize_chunk_id=ctx.chunk_id,
            amorsize_chunk_size=ctx.chunk_size,
            amorsize_chunk_seconds=ctx.chunk_time,
            amorsize_worker_id=ctx.worker_id,
            amorsize_worker_key=ctx.metadata.get("worker_key"),
            amorsize_worker_pid=ctx.pid,
            amorsize_items_completed=ctx.items_completed,
        )
        self.logger.debug(
            "amorsize %s: chunk %s (%d items) done by worker %s in %.4f s",
            extra["amorsize_function"], ctx.chunk_id, ctx.chunk_size, ctx.worker_id,
            ctx.chunk_time, extra=extra,
        )

    def on_plan_change(self, ctx: HookContext) -> None:
        """One record: the run revised its plan, and why."""
        if not self.logger.isEnabledFor(self.level):
            return
        extra = self._common(ctx)
        extra.update(
            amorsize_executor_type=ctx.executor_type,
            amorsize_estimated_speedup=_number(ctx.estimated_speedup),
            amorsize_reason=ctx.metadata.get("reason"),
        )
        self.logger.log(
            self.level, "amorsize %s: plan revised to %s n_jobs=%d chunksize=%d: %s",
            extra["amorsize_function"], ctx.executor_type, ctx.n_jobs, ctx.chunksize,
            extra["amorsize_reason"], extra=extra,
        )

    def on_error(self, ctx: HookContext) -> None:
        """One record: what failed, with the worker's traceback in extra."""
        status = ctx.status or "error"
        level = logging.WARNING if status == "cancelled" else logging.ERROR
        if not self.logger.isEnabledFor(level):
            return
        extra = self._common(ctx)
        error_type = ctx.error_type
        extra.update(
            amorsize_status=status,
            amorsize_error_type=error_type,
            amorsize_error_message=ctx.error_message,
            amorsize_error_traceback=ctx.error_traceback,
            amorsize_chunk_id=ctx.chunk_id,
            amorsize_worker_id=ctx.worker_id,
            amorsize_items_completed=ctx.items_completed,
        )
        self.logger.log(
            level, "amorsize %s: %s: %s: %s", extra["amorsize_function"], status,
            error_type, ctx.error_message, extra=extra,
        )

    def on_post_execute(self, ctx: HookContext) -> None:
        """One record: how the run ended and what it achieved."""
        if not self.logger.isEnabledFor(self.level):
            return
        extra = self._common(ctx)
        extra.update(
            amorsize_status=ctx.status,
            amorsize_executor_type=ctx.executor_type,
            amorsize_items_completed=ctx.items_completed,
            amorsize_results_count=ctx.results_count,
            amorsize_throughput_items_per_second=ctx.throughput_items_per_sec,
            amorsize_first_estimated_speedup=_number(ctx.first_estimated_speedup),
            amorsize_estimated_speedup=_number(ctx.estimated_speedup),
            amorsize_actual_speedup=_number(ctx.actual_speedup),
            amorsize_parallel_efficiency=_number(ctx.parallel_efficiency),
            amorsize_chunks_completed=ctx.metadata.get("chunks_completed"),
            amorsize_worker_count=ctx.worker_count,
        )
        self.logger.log(
            self.level,
            "amorsize %s: %s, %d items in %.3f s (%.1f items/s, speedup %.2fx)",
            extra["amorsize_function"], extra["amorsize_status"], ctx.items_completed,
            ctx.elapsed_time, ctx.throughput_items_per_sec,
            extra["amorsize_actual_speedup"] or 0.0, extra=extra,
        )

