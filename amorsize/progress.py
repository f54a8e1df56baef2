"""A tqdm progress bar for one run: `execute(..., progress=True)` or ProgressBarHook().

The bar counts items (not chunks), shows throughput and ETA, and works when the total
is unknown (generators), in a terminal or a notebook (`tqdm.auto`), for serial and
parallel runs. Each run gets its own bar (a run-scoped observer), closed at
POST_EXECUTE, which fires after errors and cancels too. tqdm is imported when a bar
is made (`pip install "amorsize[progress]"`).
"""

from __future__ import annotations

from typing import Any, Optional

from amorsize.hooks import Hook, HookContext, RunObserver

INSTALL_HINT = 'pip install "amorsize[progress]"'


def _tqdm_class() -> Any:
    """Import tqdm.auto lazily; name the extra when it is missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError as missing:
        raise ImportError(f"the progress bar needs tqdm: {INSTALL_HINT}") from missing
    return tqdm


class _Bar(RunObserver):
    """The bar of one run."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def on_chunk_complete(self, ctx: HookContext) -> None:
        if ctx.chunk_size:
            self.bar.update(ctx.chunk_size)

    def on_progress(self, ctx: HookContext) -> None:
        bar = self.bar
        if bar.total is None and ctx.total_items is not None and ctx.percent_complete == 100.0:
            bar.total = ctx.total_items  # the final update of a run of unknown length
        if bar.n != ctx.items_completed:
            bar.n = ctx.items_completed
        bar.refresh()

    def on_plan_change(self, ctx: HookContext) -> None:
        self.bar.set_postfix_str(f"{ctx.executor_type} x{ctx.n_jobs}", refresh=False)

    def on_error(self, ctx: HookContext) -> None:
        self.bar.set_postfix_str(f"{ctx.status}: {ctx.error_type}", refresh=False)

    def on_post_execute(self, ctx: HookContext) -> None:
        self.bar.close()


class ProgressBarHook(Hook):
    """One tqdm bar per run; `tqdm_options` (file=, desc=, ...) pass through."""

    def __init__(self, **tqdm_options: Any) -> None:
        self._tqdm = _tqdm_class()
        self.tqdm_options = tqdm_options

    def start_run(self, ctx: HookContext) -> Optional[RunObserver]:
        """Open the run's bar."""
        options: dict[str, Any] = {
            "desc": ctx.function or "amorsize",
            "unit": "item",
            "dynamic_ncols": True,
            "postfix": f"{ctx.executor_type} x{ctx.n_jobs}",
        }
        options.update(self.tqdm_options)
        options["total"] = ctx.total_items
        return _Bar(self._tqdm(**options))
