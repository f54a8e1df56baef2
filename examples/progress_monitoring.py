"""Progress monitoring: a tqdm bar (`progress=True`), a configured bar, a callback.

Run: python examples/progress_monitoring.py   (needs `pip install "amorsize[progress]"`)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from amorsize import HookEvent, HookManager, create_progress_hook, execute
from amorsize.integrations.progress import ProgressBarHook


def resize_image(size: int) -> int:
    """Stand-in for real work: a little CPU and a little waiting."""
    time.sleep(0.004)
    return sum(i * i for i in range(size % 500))


def incoming(count: int) -> Iterator[int]:
    """A generator: the total is not known in advance."""
    yield from range(count)


def main() -> None:
    """Show three ways to follow a run."""
    print("1. execute(..., progress=True): a bar on stderr")
    execute(resize_image, range(400), progress=True)

    print("2. a configured bar over a generator (unknown total: count and rate only)")
    bar = ProgressBarHook(desc="thumbnails", unit="img", file=sys.stdout, ascii=True)
    results = execute(resize_image, incoming(300), bar)
    print(f"   {len(results)} thumbnails")

    print("3. your own callback, at most every 0.2 s plus the final 100 %")
    hooks = HookManager()
    hooks.register(
        HookEvent.ON_PROGRESS,
        create_progress_hook(
            lambda percent, done, total: print(f"   {percent:5.1f}% ({done}/{total})"),
            min_interval=0.2,
        ),
    )
    execute(resize_image, range(400), hooks, progress_interval=0.1)
    print("done")


if __name__ == "__main__":
    main()
