"""Error handling and alerting: what a failing item does, and how to keep going.

Run: python examples/error_handling.py
"""

from __future__ import annotations

import logging
import time
from typing import Union

from amorsize import HookContext, HookEvent, HookManager, execute
from amorsize.integrations.logging import LoggingHook


class BadRecord(ValueError):
    """A record the function cannot process."""


def process(n: int) -> int:
    """Fails on every 97th record."""
    time.sleep(0.001)
    if n % 97 == 96:
        raise BadRecord(f"record {n} is malformed")
    return n * 2


def process_or_error(n: int) -> Union[int, str]:
    """The same work, but a bad record becomes a value instead of stopping the run."""
    try:
        return process(n)
    except BadRecord as error:
        return f"error: {error}"


def alert(ctx: HookContext) -> None:
    """An ON_ERROR hook: where you would page someone or post to a channel."""
    last_line = (ctx.error_traceback or "").strip().splitlines()[-1:] or ["?"]
    print(f"ALERT {ctx.function} {ctx.status}: "
          f"{type(ctx.error).__name__} in chunk {ctx.chunk_id} "
          f"after {ctx.items_completed} items; worker said: {last_line[0]}")


def main() -> None:
    """Fail fast with an alert, then run again collecting the failures."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    hooks = HookManager()
    hooks.register(HookEvent.ON_ERROR, alert)
    hooks.register(
        HookEvent.POST_EXECUTE,
        lambda ctx: print(f"run ended: status={ctx.status}"),
    )
    hooks.add(LoggingHook(level=logging.WARNING))

    print("1. fail fast: the first bad record stops the run, with the same exception type")
    try:
        execute(process, range(500), hooks)
    except BadRecord as error:
        print(f"caught {type(error).__name__}: {error}")

    print("2. keep going: turn failures into values and collect them")
    results = execute(process_or_error, range(500), hooks)
    failures = [r for r in results if isinstance(r, str)]
    print(f"{len(results) - len(failures)} ok, {len(failures)} failed: {failures[:2]} ...")


if __name__ == "__main__":
    main()
