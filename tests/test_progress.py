"""ProgressBarHook and execute(progress=True) with a real tqdm writing to a StringIO."""

from __future__ import annotations

import io
import re
import sys

import pytest

from amorsize import HookContext, HookEvent, HookManager, execute, execute_iter
from amorsize.integrations.progress import ProgressBarHook
from tests.workloads import Boom, raise_on_13, spin


def last_line(stream: io.StringIO) -> str:
    """The last state tqdm drew (it redraws with carriage returns)."""
    return re.split(r"[\r\n]+", stream.getvalue().strip())[-1]


def test_counts_items_with_total_rate_and_closes() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0, desc="squares")
    results = execute(spin, range(300), bar, n_jobs=2, chunksize=25)
    assert results == [spin(x) for x in range(300)]
    final = last_line(stream)
    assert final.startswith("squares: 100%")
    assert "300/300" in final
    assert "item/s" in final
    assert stream.getvalue().endswith("\n")  # closed
    assert bar.open_bars == 0


def test_items_not_chunks_in_intermediate_updates() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    execute(spin, range(40), bar, n_jobs=1, chunksize=10)
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


def test_closes_on_error_and_marks_it() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    with pytest.raises(Boom):
        execute(raise_on_13, range(100), bar, n_jobs=2, chunksize=5)
    assert bar.open_bars == 0
    final = last_line(stream)
    assert "error: Boom" in final
    assert "100/100" not in final
    assert stream.getvalue().endswith("\n")


def test_closes_when_execute_iter_is_abandoned() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    results = execute_iter(spin, range(500), bar, n_jobs=2, chunksize=10)
    first = [next(results) for _ in range(15)]
    assert first == [spin(x) for x in range(15)]
    results.close()  # type: ignore[attr-defined]
    assert bar.open_bars == 0
    assert "cancelled: ExecutionCancelled" in last_line(stream)


def test_progress_true_shortcut_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    manager = HookManager()
    results = execute(spin, range(50), manager, progress=True, n_jobs=1, chunksize=10)
    assert len(results) == 50
    err = capsys.readouterr().err
    assert "50/50" in err
    assert manager.get_hook_count(HookEvent.ON_CHUNK_COMPLETE) == 0  # removed after the run


def test_progress_accepts_a_configured_hook() -> None:
    stream = io.StringIO()
    execute(spin, range(30), progress=ProgressBarHook(file=stream, desc="mine"), n_jobs=1)
    assert last_line(stream).startswith("mine: 100%")


def test_one_bar_per_execution_id() -> None:
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0)
    manager = HookManager()
    manager.add(bar)

    def ctx(event: HookEvent, run: str, **fields: object) -> HookContext:
        return HookContext(event=event, metadata={"execution_id": run, "function": run},
                           **fields)  # type: ignore[arg-type]

    manager.trigger(ctx(HookEvent.PRE_EXECUTE, "a", total_items=10))
    manager.trigger(ctx(HookEvent.PRE_EXECUTE, "b", total_items=20))
    assert bar.open_bars == 2
    manager.trigger(ctx(HookEvent.ON_CHUNK_COMPLETE, "b", chunk_size=5))
    manager.trigger(ctx(HookEvent.ON_CHUNK_COMPLETE, "a", chunk_size=3))
    manager.trigger(ctx(HookEvent.POST_EXECUTE, "a"))
    assert bar.open_bars == 1
    manager.trigger(ctx(HookEvent.POST_EXECUTE, "b"))
    assert bar.open_bars == 0
    text = stream.getvalue()
    assert "a:  30%" in text
    assert "b:  25%" in text


def test_missing_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r'pip install "amorsize\[progress\]"'):
        ProgressBarHook()
