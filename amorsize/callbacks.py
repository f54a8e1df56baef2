"""Ready-made callbacks of the original API: progress, timing, throughput, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from amorsize.hooks import HookCallback, HookContext


def create_progress_hook(
    callback: Callable[[float, int, Optional[int]], None], min_interval: float = 1.0
) -> HookCallback:
    """Build an ON_PROGRESS (or POST_EXECUTE) callback calling
    `callback(percent, completed, total)`.

    Calls are at least `min_interval` seconds apart (by `ctx.timestamp`), except the
    final one at 100 %, which always goes through.
    """
    last: list[Optional[float]] = [None]

    def on_progress(ctx: HookContext) -> None:
        percent = ctx.percent_complete
        final = percent is not None and percent >= 100.0
        previous = last[0]
        if not final and previous is not None and ctx.timestamp - previous < min_interval:
            return
        last[0] = ctx.timestamp
        callback(percent if percent is not None else 0.0, ctx.items_completed, ctx.total_items)

    return on_progress


def create_timing_hook(callback: Callable[[str, float], None]) -> HookCallback:
    """Build a callback calling `callback(event_value, elapsed_time)` on each event."""

    def on_event(ctx: HookContext) -> None:
        callback(ctx.event.value, ctx.elapsed_time)

    return on_event


def create_throughput_hook(
    callback: Callable[[float], None], min_interval: float = 5.0
) -> HookCallback:
    """Build a callback calling `callback(items_per_sec)` at most every `min_interval` s."""
    last: list[Optional[float]] = [None]

    def on_event(ctx: HookContext) -> None:
        previous = last[0]
        if previous is not None and ctx.timestamp - previous < min_interval:
            return
        last[0] = ctx.timestamp
        callback(ctx.throughput_items_per_sec)

    return on_event


def create_error_hook(callback: Callable[[BaseException, str], None]) -> HookCallback:
    """Build an ON_ERROR callback calling `callback(error, traceback_str)` when an error
    is set; `traceback_str` is "" when there is none (a cancelled run)."""

    def on_error(ctx: HookContext) -> None:
        if ctx.error is not None:
            callback(ctx.error, ctx.error_traceback or "")

    return on_error
