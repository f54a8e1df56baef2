"""HookManager API, isolation, thread-safety, Hook objects, helper factories."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Optional

import pytest

from amorsize.hooks import (
    Hook,
    HookCallback,
    HookContext,
    HookEvent,
    HookManager,
    RunHooks,
    RunObserver,
    as_run_hooks,
    create_error_hook,
    create_progress_hook,
    create_throughput_hook,
    create_timing_hook,
)

ALL_VALUES = {
    "pre_execute",
    "post_execute",
    "on_worker_start",
    "on_worker_end",
    "on_chunk_complete",
    "on_error",
    "on_progress",
    "on_plan_change",
}


def ctx(event: HookEvent = HookEvent.ON_PROGRESS, **fields: Any) -> HookContext:
    """A context for `event` with the given fields."""
    return HookContext(event=event, **fields)


class Recorder:
    """A callback that records the contexts it was called with."""

    def __init__(self) -> None:
        self.seen: list[HookContext] = []

    def __call__(self, context: HookContext) -> None:
        self.seen.append(context)


class TwoEventHook(Hook):
    """An integration object subscribing to two events."""

    def __init__(self) -> None:
        self.pre: list[HookContext] = []
        self.post: list[HookContext] = []
        self.managers: list[HookManager] = []

    def callbacks(self) -> Mapping[HookEvent, HookCallback]:
        """PRE_EXECUTE and POST_EXECUTE."""
        return {HookEvent.PRE_EXECUTE: self.pre.append, HookEvent.POST_EXECUTE: self.post.append}

    def attached(self, manager: HookManager) -> None:
        """Remember the manager."""
        self.managers.append(manager)


# ------------------------------------------------------------------ event and context


def test_event_values_are_the_original_ones() -> None:
    assert {e.value for e in HookEvent} == ALL_VALUES
    assert HookEvent("on_chunk_complete") is HookEvent.ON_CHUNK_COMPLETE


def test_context_needs_only_the_event() -> None:
    before = time.time()
    context = HookContext(event=HookEvent.ON_ERROR)
    assert before <= context.timestamp <= time.time()
    assert context.total_items is None
    assert context.error is None
    assert context.items_completed == 0
    assert context.metadata == {}
    assert HookContext(event=HookEvent.ON_ERROR).metadata is not context.metadata


# ------------------------------------------------------------------ registration


def test_register_same_callback_twice_keeps_one() -> None:
    manager = HookManager()
    recorder = Recorder()
    manager.register(HookEvent.PRE_EXECUTE, recorder)
    manager.register(HookEvent.PRE_EXECUTE, recorder)
    assert manager.get_hook_count(HookEvent.PRE_EXECUTE) == 1
    manager.trigger(ctx(HookEvent.PRE_EXECUTE))
    assert len(recorder.seen) == 1


def test_same_callback_on_two_events_counts_per_event() -> None:
    manager = HookManager()
    recorder = Recorder()
    manager.register(HookEvent.PRE_EXECUTE, recorder)
    manager.register(HookEvent.POST_EXECUTE, recorder)
    assert manager.get_hook_count(HookEvent.PRE_EXECUTE) == 1
    assert manager.get_hook_count(HookEvent.POST_EXECUTE) == 1


def test_register_rejects_bad_arguments() -> None:
    manager = HookManager()
    with pytest.raises(TypeError, match="event"):
        manager.register("pre_execute", Recorder())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback"):
        manager.register(HookEvent.PRE_EXECUTE, 42)  # type: ignore[arg-type]
    assert not manager.has_hooks(HookEvent.PRE_EXECUTE)


def test_callbacks_run_in_registration_order() -> None:
    manager = HookManager()
    order: list[str] = []
    manager.register(HookEvent.ON_ERROR, lambda c: order.append("a"))
    manager.register(HookEvent.ON_ERROR, lambda c: order.append("b"))
    manager.register(HookEvent.ON_ERROR, lambda c: order.append("c"))
    manager.trigger(ctx(HookEvent.ON_ERROR))
    assert order == ["a", "b", "c"]


def test_trigger_only_calls_callbacks_of_that_event() -> None:
    manager = HookManager()
    pre, post = Recorder(), Recorder()
    manager.register(HookEvent.PRE_EXECUTE, pre)
    manager.register(HookEvent.POST_EXECUTE, post)
    context = ctx(HookEvent.POST_EXECUTE)
    manager.trigger(context)
    assert pre.seen == []
    assert post.seen == [context]


def test_unregister_returns_whether_it_was_registered() -> None:
    manager = HookManager()
    first, second = Recorder(), Recorder()
    manager.register(HookEvent.ON_PROGRESS, first)
    manager.register(HookEvent.ON_PROGRESS, second)
    assert manager.unregister(HookEvent.ON_PROGRESS, first) is True
    assert manager.unregister(HookEvent.ON_PROGRESS, first) is False
    assert manager.unregister(HookEvent.ON_ERROR, second) is False
    manager.trigger(ctx())
    assert first.seen == [] and len(second.seen) == 1
    assert manager.unregister(HookEvent.ON_PROGRESS, second) is True
    assert not manager.has_hooks(HookEvent.ON_PROGRESS)


def test_unregister_all_returns_the_number_removed() -> None:
    manager = HookManager()
    for _ in range(3):
        manager.register(HookEvent.ON_PROGRESS, Recorder())
    manager.register(HookEvent.ON_ERROR, Recorder())
    manager.register(HookEvent.PRE_EXECUTE, Recorder())
    assert manager.unregister_all(HookEvent.ON_PROGRESS) == 3
    assert manager.unregister_all(HookEvent.ON_PROGRESS) == 0
    assert manager.get_hook_count(HookEvent.ON_ERROR) == 1
    assert manager.unregister_all() == 2
    assert manager.unregister_all() == 0
    assert not any(manager.has_hooks(e) for e in HookEvent)


def test_has_hooks_and_count() -> None:
    manager = HookManager()
    assert not manager.has_hooks(HookEvent.ON_WORKER_START)
    assert manager.get_hook_count(HookEvent.ON_WORKER_START) == 0
    manager.register(HookEvent.ON_WORKER_START, Recorder())
    manager.register(HookEvent.ON_WORKER_START, Recorder())
    assert manager.has_hooks(HookEvent.ON_WORKER_START)
    assert manager.get_hook_count(HookEvent.ON_WORKER_START) == 2
    assert manager.active_events() == frozenset({HookEvent.ON_WORKER_START})


def test_decorator_registers_and_returns_the_function() -> None:
    manager = HookManager()
    seen: list[HookContext] = []

    @manager.on(HookEvent.ON_CHUNK_COMPLETE)
    def on_chunk(context: HookContext) -> None:
        seen.append(context)

    assert callable(on_chunk) and on_chunk.__name__ == "on_chunk"
    assert manager.get_hook_count(HookEvent.ON_CHUNK_COMPLETE) == 1
    manager.trigger(ctx(HookEvent.ON_CHUNK_COMPLETE, chunk_id=3))
    assert [c.chunk_id for c in seen] == [3]


def test_trigger_without_callbacks_counts_nothing() -> None:
    manager = HookManager()
    manager.trigger(ctx(HookEvent.POST_EXECUTE))
    assert manager.get_stats()["call_counts"]["post_execute"] == 0


# ------------------------------------------------------------------ statistics


def test_get_stats_shape_and_counts() -> None:
    manager = HookManager()
    manager.register(HookEvent.ON_PROGRESS, Recorder())
    manager.register(HookEvent.ON_PROGRESS, Recorder())
    manager.register(HookEvent.ON_ERROR, Recorder())
    for _ in range(3):
        manager.trigger(ctx(HookEvent.ON_PROGRESS))
    stats = manager.get_stats()
    assert set(stats) == {"hook_counts", "call_counts", "error_counts"}
    for counts in stats.values():
        assert set(counts) == ALL_VALUES
        assert all(isinstance(n, int) for n in counts.values())
    assert stats["hook_counts"]["on_progress"] == 2
    assert stats["hook_counts"]["on_error"] == 1
    assert stats["hook_counts"]["pre_execute"] == 0
    assert stats["call_counts"]["on_progress"] == 6
    assert stats["call_counts"]["on_error"] == 0
    assert sum(stats["error_counts"].values()) == 0


def test_get_stats_returns_a_copy() -> None:
    manager = HookManager()
    manager.register(HookEvent.ON_PROGRESS, Recorder())
    stats = manager.get_stats()
    stats["call_counts"]["on_progress"] = 99
    assert manager.get_stats()["call_counts"]["on_progress"] == 0


# ------------------------------------------------------------------ isolation


def test_raising_callback_is_logged_counted_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = HookManager()
    before, after = Recorder(), Recorder()

    def broken(context: HookContext) -> None:
        raise RuntimeError("hook bug")

    manager.register(HookEvent.ON_CHUNK_COMPLETE, before)
    manager.register(HookEvent.ON_CHUNK_COMPLETE, broken)
    manager.register(HookEvent.ON_CHUNK_COMPLETE, after)
    with caplog.at_level(logging.ERROR, logger="amorsize.hooks"):
        manager.trigger(ctx(HookEvent.ON_CHUNK_COMPLETE))
        manager.trigger(ctx(HookEvent.ON_CHUNK_COMPLETE))
    assert len(before.seen) == 2 and len(after.seen) == 2
    stats = manager.get_stats()
    assert stats["error_counts"]["on_chunk_complete"] == 2
    assert stats["call_counts"]["on_chunk_complete"] == 6
    records = [r for r in caplog.records if r.name == "amorsize.hooks"]
    assert len(records) == 2
    assert "on_chunk_complete" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is RuntimeError


def test_verbose_manager_logs_each_trigger(caplog: pytest.LogCaptureFixture) -> None:
    manager = HookManager(verbose=True)
    manager.register(HookEvent.PRE_EXECUTE, Recorder())
    with caplog.at_level(logging.INFO, logger="amorsize.hooks"):
        manager.trigger(ctx(HookEvent.PRE_EXECUTE))
    assert any("pre_execute" in r.getMessage() for r in caplog.records)


def test_callbacks_run_outside_the_lock() -> None:
    """A callback may use the manager (register, stats) without deadlocking."""
    manager = HookManager()
    late = Recorder()

    def reentrant(context: HookContext) -> None:
        manager.register(HookEvent.ON_ERROR, late)
        manager.get_stats()
        manager.unregister(HookEvent.PRE_EXECUTE, reentrant)

    manager.register(HookEvent.PRE_EXECUTE, reentrant)
    worker = threading.Thread(target=manager.trigger, args=(ctx(HookEvent.PRE_EXECUTE),))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert manager.get_hook_count(HookEvent.ON_ERROR) == 1
    assert not manager.has_hooks(HookEvent.PRE_EXECUTE)


def test_concurrent_register_unregister_and_trigger_keep_consistent_counts() -> None:
    manager = HookManager()
    calls = [0]
    calls_lock = threading.Lock()
    start = threading.Barrier(8)

    def make_callback() -> HookCallback:
        def callback(context: HookContext) -> None:
            with calls_lock:
                calls[0] += 1

        return callback

    kept = [make_callback() for _ in range(8)]
    failures: list[BaseException] = []  # an assert in a thread would only warn

    def worker(index: int) -> None:
        try:
            start.wait()
            manager.register(HookEvent.ON_PROGRESS, kept[index])
            for _ in range(200):
                temporary = make_callback()
                manager.register(HookEvent.ON_PROGRESS, temporary)
                manager.trigger(ctx(HookEvent.ON_PROGRESS))
                if not manager.unregister(HookEvent.ON_PROGRESS, temporary):
                    raise AssertionError("a registered callback was not found")
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert manager.get_hook_count(HookEvent.ON_PROGRESS) == 8
    stats = manager.get_stats()
    assert stats["call_counts"]["on_progress"] == calls[0]
    assert calls[0] >= 8 * 200 * 2  # each trigger saw at least its own two callbacks
    assert stats["error_counts"]["on_progress"] == 0


# ------------------------------------------------------------------ Hook objects


def test_add_registers_every_callback_and_attaches_once() -> None:
    manager = HookManager()
    hook = TwoEventHook()
    manager.add(hook)
    manager.add(hook)
    assert hook.managers == [manager]
    assert manager.get_hook_count(HookEvent.PRE_EXECUTE) == 1
    assert manager.get_hook_count(HookEvent.POST_EXECUTE) == 1
    manager.trigger(ctx(HookEvent.PRE_EXECUTE))
    manager.trigger(ctx(HookEvent.POST_EXECUTE))
    assert len(hook.pre) == 1 and len(hook.post) == 1


def test_remove_unregisters_every_callback() -> None:
    manager = HookManager()
    hook, other = TwoEventHook(), Recorder()
    manager.add(hook)
    manager.register(HookEvent.PRE_EXECUTE, other)
    manager.remove(hook)
    assert manager.get_hook_count(HookEvent.PRE_EXECUTE) == 1
    assert not manager.has_hooks(HookEvent.POST_EXECUTE)
    manager.trigger(ctx(HookEvent.PRE_EXECUTE))
    assert hook.pre == [] and len(other.seen) == 1
    manager.add(hook)
    assert hook.managers == [manager, manager]


def test_add_rejects_objects_that_are_not_hooks() -> None:
    with pytest.raises(TypeError, match="Hook"):
        HookManager().add(Recorder())  # type: ignore[arg-type]


def test_base_hook_subscribes_to_nothing() -> None:
    manager = HookManager()
    manager.add(Hook())
    assert not manager.active_events()


# ------------------------------------------------------------------ what a run publishes to


def test_as_run_hooks_normalises_without_changing_a_manager() -> None:
    assert not as_run_hooks(None) and not as_run_hooks([])
    manager = HookManager()
    assert as_run_hooks(manager) == RunHooks(managers=(manager,))
    hook = TwoEventHook()
    assert as_run_hooks(hook) == RunHooks(hooks=(hook,))
    first, second = TwoEventHook(), TwoEventHook()
    mixed = as_run_hooks([first, manager, second, first])
    assert mixed.managers == (manager,) and mixed.hooks == (first, second)
    # The caller's manager is not touched: the listed hooks serve this run alone.
    assert not manager.active_events() and manager.hook_objects() == ()
    assert first.managers == []
    two = HookManager()
    assert as_run_hooks([manager, two]).managers == (manager, two)


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ("pre_execute", "hooks must be"),
        (42, "hooks must be"),
        (Recorder(), "hooks must be"),
        ([TwoEventHook(), 42], "each entry of hooks"),
        ([lambda ctx: None], "each entry of hooks"),
    ],
)
def test_as_run_hooks_type_errors(hooks: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        as_run_hooks(hooks)


class CountingObserver(RunObserver):
    """Counts the chunks of one run."""

    def __init__(self) -> None:
        self.chunks = 0
        self.ended = False

    def on_chunk_complete(self, ctx: HookContext) -> None:
        self.chunks += 1

    def on_post_execute(self, ctx: HookContext) -> None:
        self.ended = True


class PerRun(Hook):
    """A run-scoped integration: one observer per run, no per-run dictionary."""

    def __init__(self) -> None:
        self.observers: list[CountingObserver] = []

    def start_run(self, ctx: HookContext) -> RunObserver:
        observer = CountingObserver()
        self.observers.append(observer)
        return observer


def test_observed_events_are_the_overridden_methods() -> None:
    from amorsize.hooks import observed_events

    assert observed_events(RunObserver()) == frozenset()
    assert observed_events(CountingObserver()) == {HookEvent.ON_CHUNK_COMPLETE,
                                                   HookEvent.POST_EXECUTE}


def test_each_run_gets_its_own_observer() -> None:
    from amorsize import execute

    hook = PerRun()
    manager = HookManager()
    manager.add(hook)
    execute(abs, range(30), manager, executor_type="serial", chunksize=10)
    execute(abs, range(20), [hook], executor_type="serial", chunksize=10)
    assert [(o.chunks, o.ended) for o in hook.observers] == [(3, True), (2, True)]


def test_a_raising_observer_is_counted_process_wide_and_isolated(
        caplog: pytest.LogCaptureFixture) -> None:
    from amorsize import execute
    from amorsize.hooks import hook_error_counts

    class Broken(RunObserver):
        def on_chunk_complete(self, ctx: HookContext) -> None:
            raise RuntimeError("observer bug")

    class BrokenHook(Hook):
        def start_run(self, ctx: HookContext) -> RunObserver:
            return Broken()

    before = hook_error_counts()["on_chunk_complete"]
    with caplog.at_level(logging.ERROR, logger="amorsize.hooks"):
        assert execute(abs, range(-5, 5), BrokenHook(), executor_type="serial",
                       chunksize=5) == [abs(x) for x in range(-5, 5)]
    assert hook_error_counts()["on_chunk_complete"] == before + 2
    assert "observer bug" in caplog.text


def test_trigger_takes_the_event_separately_too() -> None:
    manager = HookManager()
    seen = Recorder()
    manager.register(HookEvent.ON_PROGRESS, seen)
    context = ctx(HookEvent.POST_EXECUTE, n_jobs=8)
    manager.trigger(HookEvent.ON_PROGRESS, context)  # the event wins over ctx.event
    assert [c.event for c in seen.seen] == [HookEvent.ON_PROGRESS]
    with pytest.raises(TypeError, match="HookEvent or HookContext"):
        manager.trigger("on_progress")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be None"):
        manager.trigger(ctx(), ctx())
    with pytest.raises(ValueError, match="must be provided"):
        manager.trigger(HookEvent.ON_PROGRESS)


# ------------------------------------------------------------------ helper factories


def test_progress_hook_throttles_by_context_timestamp() -> None:
    calls: list[tuple[float, int, Optional[int]]] = []
    hook = create_progress_hook(lambda p, done, total: calls.append((p, done, total)),
                                min_interval=1.0)
    for timestamp, done in ((100.0, 10), (100.5, 20), (100.99, 30), (101.0, 40), (101.5, 50)):
        hook(ctx(timestamp=timestamp, items_completed=done, total_items=100,
                 percent_complete=float(done)))
    assert calls == [(10.0, 10, 100), (40.0, 40, 100)]


def test_progress_hook_final_call_always_goes_through() -> None:
    calls: list[float] = []
    hook = create_progress_hook(lambda p, done, total: calls.append(p), min_interval=60.0)
    hook(ctx(timestamp=5.0, percent_complete=10.0))
    hook(ctx(timestamp=5.1, percent_complete=50.0))
    hook(ctx(timestamp=5.2, percent_complete=100.0))
    assert calls == [10.0, 100.0]


def test_progress_hook_unknown_percent_reports_zero() -> None:
    calls: list[tuple[float, int, Optional[int]]] = []
    hook = create_progress_hook(lambda p, done, total: calls.append((p, done, total)))
    hook(ctx(items_completed=7))
    assert calls == [(0.0, 7, None)]


def test_progress_hook_ignores_the_wall_clock() -> None:
    """Two contexts with the same timestamp are throttled however long apart they come."""
    calls: list[float] = []
    hook = create_progress_hook(lambda p, done, total: calls.append(p), min_interval=1.0)
    hook(ctx(timestamp=1.0, percent_complete=1.0))
    time.sleep(0.02)
    hook(ctx(timestamp=1.0, percent_complete=2.0))
    hook(ctx(timestamp=2.5, percent_complete=3.0))
    assert calls == [1.0, 3.0]


def test_timing_hook_reports_event_and_elapsed_time() -> None:
    calls: list[tuple[str, float]] = []
    hook = create_timing_hook(lambda event, elapsed: calls.append((event, elapsed)))
    hook(ctx(HookEvent.PRE_EXECUTE, elapsed_time=0.25))
    hook(ctx(HookEvent.POST_EXECUTE, elapsed_time=3.5))
    assert calls == [("pre_execute", 0.25), ("post_execute", 3.5)]


def test_throughput_hook_throttles_by_context_timestamp() -> None:
    calls: list[float] = []
    hook = create_throughput_hook(calls.append, min_interval=5.0)
    for timestamp, rate in ((0.0, 1.0), (4.9, 2.0), (5.0, 3.0), (9.0, 4.0), (10.0, 5.0)):
        hook(ctx(timestamp=timestamp, throughput_items_per_sec=rate))
    assert calls == [1.0, 3.0, 5.0]


def test_error_hook_only_when_an_error_is_set() -> None:
    calls: list[tuple[BaseException, Optional[str]]] = []
    hook = create_error_hook(lambda error, tb: calls.append((error, tb)))
    hook(ctx(HookEvent.ON_ERROR))
    boom = ValueError("boom")
    hook(ctx(HookEvent.ON_ERROR, error=boom, error_traceback="Traceback: ..."))
    assert calls == [(boom, "Traceback: ...")]


def test_factories_work_through_a_manager() -> None:
    manager = HookManager()
    percents: list[float] = []
    errors: list[BaseException] = []
    manager.register(HookEvent.ON_PROGRESS,
                     create_progress_hook(lambda p, d, t: percents.append(p), min_interval=0))
    manager.register(HookEvent.ON_ERROR, create_error_hook(lambda e, tb: errors.append(e)))
    manager.trigger(ctx(HookEvent.ON_PROGRESS, percent_complete=50.0))
    manager.trigger(ctx(HookEvent.ON_ERROR, error=KeyError("k")))
    assert percents == [50.0]
    assert [type(e) for e in errors] == [KeyError]


def test_call_counts_stay_exact_across_registration_changes() -> None:
    manager = HookManager()
    event = HookEvent.ON_CHUNK_COMPLETE
    ctx = HookContext(event=event)
    manager.register(event, lambda c: None)
    for _ in range(3):
        manager.trigger(ctx)
    second = lambda c: None  # noqa: E731
    manager.register(event, second)
    for _ in range(2):
        manager.trigger(ctx)
    manager.unregister(event, second)
    manager.trigger(ctx)
    assert manager.get_stats()["call_counts"][event.value] == 3 + 2 * 2 + 1
    # Many more changes than the manager keeps apart: the counts are folded, not lost.
    for _ in range(100):
        manager.register(event, second)
        manager.trigger(ctx)
        manager.unregister(event, second)
    assert manager.get_stats()["call_counts"][event.value] == 8 + 100 * 2
    assert manager.get_stats()["call_counts"][event.value] == 208  # reading changes nothing


def test_call_counts_are_exact_under_concurrent_triggers() -> None:
    manager = HookManager()
    event = HookEvent.ON_PROGRESS
    manager.register(event, lambda c: None)
    manager.register(event, lambda c: None)
    ctx = HookContext(event=event)

    def fire() -> None:
        for _ in range(2_000):
            manager.trigger(ctx)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(50):
        manager.get_stats()  # reads while the triggers run
    for thread in threads:
        thread.join()
    assert manager.get_stats()["call_counts"][event.value] == 8 * 2_000 * 2


def test_single_counts_agree_with_the_stats() -> None:
    manager = HookManager()
    manager.register(HookEvent.ON_ERROR, lambda c: None)

    def broken(ctx: HookContext) -> None:
        raise RuntimeError("broken hook")

    manager.register(HookEvent.ON_ERROR, broken)
    manager.trigger(HookContext(event=HookEvent.ON_ERROR))
    stats = manager.get_stats()
    assert manager.get_call_count(HookEvent.ON_ERROR) == stats["call_counts"]["on_error"] == 2
    assert manager.get_error_counts() == stats["error_counts"]
    assert manager.get_error_counts()["on_error"] == 1
