"""A tqdm progress bar driven by hook events: `execute(..., progress=True)`.

The bar counts items (not chunks), shows throughput and ETA, and works when the
total is unknown (generators), in a terminal or a notebook (`tqdm.auto`), for
serial and parallel runs. It closes on POST_EXECUTE, which fires after errors too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from amorsize.hooks import Hook, HookCallback, HookContext, HookEvent


def _tqdm_class() -> Any:
    """Import tqdm.auto lazily; name the extra when it is missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError as missing:
        raise ImportError(
            'the progress bar needs tqdm: pip install "amorsize[progress]"'
        ) from missing
    return tqdm


class ProgressBarHook(Hook):
    """One tqdm bar per execute() call; `tqdm_options` (file=, desc=, ...) pass through.

    The same object may serve several runs, even concurrent ones: bars are kept per
    execution id.
    """

    def __init__(self, **tqdm_options: Any) -> None:
        self._tqdm = _tqdm_class()
        self.tqdm_options = tqdm_options
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """Open on PRE_EXECUTE, advance per chunk, close on ON_ERROR / POST_EXECUTE."""
        return {
            HookEvent.PRE_EXECUTE: self._open,
            HookEvent.ON_CHUNK_COMPLETE: self._advance,
            HookEvent.ON_PROGRESS: self._refresh,
            HookEvent.ON_ERROR: self._fail,
            HookEvent.POST_EXECUTE: self._close,
        }

    @staticmethod
    def _key(ctx: HookContext) -> str:
        return str(ctx.metadata.get("execution_id", ""))

    def _open(self, ctx: HookContext) -> None:
        options: dict[str, Any] = {
            "desc": str(ctx.metadata.get("function", "amorsize")),
            "unit": "item",
            "dynamic_ncols": True,
            "postfix": f"{ctx.metadata.get('executor_type', '?')} x{ctx.n_jobs}",
        }
        options.update(self.tqdm_options)
        options["total"] = ctx.total_items
        bar = self._tqdm(**options)
        with self._lock:
            previous = self._bars.pop(self._key(ctx), None)
            self._bars[self._key(ctx)] = bar
        if previous is not None:
            previous.close()

    def _advance(self, ctx: HookContext) -> None:
        bar = self._bars.get(self._key(ctx))
        if bar is not None and ctx.chunk_size:
            bar.update(ctx.chunk_size)

    def _refresh(self, ctx: HookContext) -> None:
        bar = self._bars.get(self._key(ctx))
        if bar is None:
            return
        if bar.total is None and ctx.total_items is not None and ctx.percent_complete == 100.0:
            bar.total = ctx.total_items  # the final update of a run of unknown length
        if bar.n != ctx.items_completed:
            bar.n = ctx.items_completed
        bar.refresh()

    def _fail(self, ctx: HookContext) -> None:
        bar = self._bars.get(self._key(ctx))
        if bar is not None:
            status = ctx.metadata.get("status", "error")
            bar.set_postfix_str(f"{status}: {type(ctx.error).__name__}", refresh=False)
        self._close(ctx)

    def _close(self, ctx: HookContext) -> None:
        with self._lock:
            bar = self._bars.pop(self._key(ctx), None)
        if bar is not None:
            bar.close()

    @property
    def open_bars(self) -> int:
        """How many bars are open (runs in progress)."""
        return len(self._bars)
