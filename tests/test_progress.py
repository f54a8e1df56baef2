"""ProgressBarHook and execute(progress=True) with a real tqdm writing to a StringIO."""

from __future__ import annotations

import io
import re
import sys
import threading
from typing import Any

import pytest
from tqdm.auto import tqdm

import amorsize.progress
from amorsize import Hook, HookContext, HookEvent, HookManager, execute, execute_iter, names
from amorsize.integrations.progress import ProgressBarHook
from tests.workloads import Boom, raise_on_13, spin, square

SPIN = names.function_label(spin)
SQUARE = names.function_label(square)


def last_line(stream: io.StringIO) -> str:
    """The last state tqdm drew (it redraws with carriage returns)."""
    return re.split(r"[\r\n]+", stream.getvalue().strip())[-1]


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every tqdm bar a ProgressBarHook made while the test ran, kept (not collected:
    a bar still open shows as open)."""
    made: list[Any] = []

    class Recorded(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(amorsize.progress, "_tqdm_class", lambda: Recorded)
    return made


def closed(bar: Any) -> bool:
    """Whether close() was called on a tqdm bar (it disables the bar)."""
    return bool(bar.disable)


def test_counts_items_with_total_rate_and_closes(bars: list[Any]) -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0, desc="squares")
    results = execute(spin, range(300), bar, n_jobs=2, chunksize=25)
    assert results == [spin(x) for x in range(300)]
    final = last_line(stream)
    assert final.startswith("squares: 100%")
    assert "300/300" in final
    assert "item/s" in final
    assert stream.getvalue().endswith("\n")
    [made] = bars
    assert closed(made) and made.n == made.total == 300


def test_items_not_chunks_in_intermediate_updates() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    execute(spin, range(40), bar, executor_type="serial", chunksize=10)
    counts = [int(m) for m in re.findall(r"\| *(\d+)/40 ", stream.getvalue())]
    assert counts[0] == 0
    assert 10 in counts and 20 in counts and 30 in counts
    assert counts[-1] == 40


def test_unknown_total_generator() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    results = execute(spin, (x for x in range(120)), bar, n_jobs=2, chunksize=10)
    assert len(results) == 120
    text = stream.getvalue()
    assert re.search(r"\b\d+item \[", text), "no count-only display while the total is unknown"
    assert "120/120" in last_line(stream)  # the total is learnt at the end


def test_serial_run() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    results, decision = execute(
        lambda x: x + 1, range(1000), bar, return_optimization_result=True
    )
    assert decision.executor_type == "serial"
    assert results == list(range(1, 1001))
    assert "1000/1000" in last_line(stream)
    assert "serial x1" in last_line(stream)


def test_plan_changes_show_in_the_postfix() -> None:
    stream = io.StringIO()
    plans: list[HookContext] = []
    manager = HookManager()
    manager.register(HookEvent.ON_PLAN_CHANGE, plans.append)
    bar = ProgressBarHook(file=stream, mininterval=0)
    # threads fixed, no chunk size: the measured task size is published as a plan change
    execute(spin, range(200), hooks=[manager, bar], executor_type="thread", n_jobs=2)
    assert plans, "the run revised no plan"
    assert "thread x2" in last_line(stream)


def test_closes_on_error_and_marks_it(bars: list[Any]) -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    with pytest.raises(Boom):
        execute(raise_on_13, range(100), bar, n_jobs=2, chunksize=5)
    [made] = bars
    assert closed(made)
    final = last_line(stream)
    assert "error: Boom" in final
    assert "100/100" not in final
    assert stream.getvalue().endswith("\n")


def test_closes_when_execute_iter_is_abandoned(bars: list[Any]) -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    results = execute_iter(spin, range(500), bar, n_jobs=2, chunksize=10)
    first = [next(results) for _ in range(15)]
    assert first == [spin(x) for x in range(15)]
    [made] = bars
    assert not closed(made)
    results.close()  # type: ignore[attr-defined]
    assert closed(made)
    assert "cancelled: ExecutionCancelled" in last_line(stream)


def test_progress_true_shortcut_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    manager = HookManager()
    results = execute(spin, range(50), manager, progress=True, executor_type="serial",
                      chunksize=10)
    assert len(results) == 50
    err = capsys.readouterr().err
    assert "50/50" in err
    assert manager.hook_objects() == ()  # the bar was this run's alone
    assert manager.get_hook_count(HookEvent.ON_CHUNK_COMPLETE) == 0


def test_progress_accepts_a_configured_hook() -> None:
    stream = io.StringIO()
    execute(spin, range(30), progress=ProgressBarHook(file=stream, desc="mine"),
            executor_type="serial")
    assert last_line(stream).startswith("mine: 100%")


def test_each_run_gets_its_own_bar(bars: list[Any]) -> None:
    stream = io.StringIO()
    hook = ProgressBarHook(file=stream, mininterval=0)

    def ctx(event: HookEvent, run: str, **fields: Any) -> HookContext:
        return HookContext(event=event, execution_id=run, function=run, **fields)

    first = hook.start_run(ctx(HookEvent.PRE_EXECUTE, "a", total_items=10))
    second = hook.start_run(ctx(HookEvent.PRE_EXECUTE, "b", total_items=20))
    assert first is not None and second is not None and first is not second
    assert [bar.desc for bar in bars] == ["a", "b"]
    second.on_chunk_complete(ctx(HookEvent.ON_CHUNK_COMPLETE, "b", chunk_size=5))
    first.on_chunk_complete(ctx(HookEvent.ON_CHUNK_COMPLETE, "a", chunk_size=3))
    first.on_post_execute(ctx(HookEvent.POST_EXECUTE, "a"))
    assert [closed(bar) for bar in bars] == [True, False]
    second.on_post_execute(ctx(HookEvent.POST_EXECUTE, "b"))
    assert [closed(bar) for bar in bars] == [True, True]
    assert [bar.n for bar in bars] == [3, 5]
    text = stream.getvalue()
    assert "a:  30%" in text
    assert "b:  25%" in text


def test_progress_on_a_shared_manager_stays_with_its_run(
        bars: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: progress=True attached the bar to the caller's manager, so a concurrent
    run of the same manager that asked for no progress opened a bar too."""
    manager = HookManager()
    quiet: dict[str, Any] = {}

    def run_quietly() -> None:
        try:
            quiet["results"] = execute(square, range(400), hooks=manager,
                                       executor_type="serial", chunksize=10)
        except BaseException as error:  # reported below
            quiet["error"] = error

    other = threading.Thread(target=run_quietly)

    def during_the_progress_run(ctx: HookContext) -> None:
        # the whole quiet run happens while the progress run is at its first chunk
        if ctx.function == SPIN and not other.is_alive() and "results" not in quiet:
            other.start()
            other.join(timeout=120)

    manager.register(HookEvent.ON_CHUNK_COMPLETE, during_the_progress_run)
    loud = execute(spin, range(40), hooks=manager, progress=True, executor_type="serial",
                   chunksize=10)
    assert "error" not in quiet, quiet.get("error")
    assert quiet["results"] == [x * x for x in range(400)]
    assert loud == [spin(x) for x in range(40)]
    [bar] = bars  # the progress run's, none for the other
    assert bar.desc == SPIN and bar.n == 40 and closed(bar)
    err = capsys.readouterr().err
    assert f"{SPIN}: 100%" in err
    assert SQUARE not in err
    assert manager.hook_objects() == ()


class Counting(Hook):
    """Counts the POST_EXECUTE events it gets through a plain callback."""

    def __init__(self) -> None:
        self.runs = 0

    def callbacks(self) -> dict[HookEvent, Any]:
        return {HookEvent.POST_EXECUTE: self.count}

    def count(self, ctx: HookContext) -> None:
        self.runs += 1


def test_hooks_listed_beside_a_manager_do_not_change_it(bars: list[Any]) -> None:
    manager = HookManager()
    ends: list[str] = []
    manager.register(HookEvent.POST_EXECUTE, lambda ctx: ends.append(ctx.execution_id))
    stats = manager.get_stats()["hook_counts"]
    bar, counting = ProgressBarHook(file=io.StringIO(), mininterval=0), Counting()

    execute(square, range(20), hooks=[manager, bar, counting], executor_type="serial",
            chunksize=5)
    assert len(bars) == 1 and bars[0].n == 20 and closed(bars[0])
    assert counting.runs == 1 and len(ends) == 1
    assert manager.hook_objects() == ()
    assert manager.get_stats()["hook_counts"] == stats

    execute(square, range(20), hooks=manager, executor_type="serial", chunksize=5)
    assert len(bars) == 1  # no bar for a run that asked for none
    assert counting.runs == 1
    assert len(ends) == 2


def test_missing_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r'pip install "amorsize\[progress\]"'):
        ProgressBarHook()


def test_the_integrations_name_is_the_core_bar() -> None:
    assert ProgressBarHook is amorsize.progress.ProgressBarHook
