"""LoggingHook: structured records through real logging handlers and a JSON formatter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from amorsize import HookContext, HookEvent, HookManager, execute
from amorsize.integrations.logging import LoggingHook
from tests.workloads import Boom, raise_on_13, spin


class ListHandler(logging.Handler):
    """Keeps the records it receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class JsonFormatter(logging.Formatter):
    """What a JSON log formatter does: every non-standard attribute becomes a field."""

    standard = set(vars(logging.makeLogRecord({}))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in self.standard}
        fields["message"] = record.getMessage()
        fields["level"] = record.levelname
        return json.dumps(fields)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, ListHandler]]:
    """A private logger at DEBUG with a collecting handler."""
    log = logging.getLogger("amorsize.test.logging_hook")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = ListHandler()
    log.addHandler(handler)
    yield log, handler
    log.removeHandler(handler)


def test_start_end_and_debug_chunks(logger: tuple[logging.Logger, ListHandler]) -> None:
    log, handler = logger
    execute(spin, range(100), LoggingHook(log), n_jobs=2, chunksize=20)
    events = [r.amorsize_event for r in handler.records]  # type: ignore[attr-defined]
    assert events[0] == "pre_execute"
    assert events[-1] == "post_execute"
    chunks = [r for r in handler.records if r.levelno == logging.DEBUG]
    assert [r.amorsize_event for r in chunks] == ["on_chunk_complete"] * len(chunks)  # type: ignore[attr-defined]
    assert sum(r.amorsize_chunk_size for r in chunks) == 100  # type: ignore[attr-defined]
    pre, post = handler.records[0], handler.records[-1]
    assert pre.levelno == post.levelno == logging.INFO
    assert pre.amorsize_n_jobs == 2  # type: ignore[attr-defined]
    assert pre.amorsize_chunksize == 20  # type: ignore[attr-defined]
    assert pre.amorsize_total_items == 100  # type: ignore[attr-defined]
    assert pre.amorsize_function == "tests.workloads:spin"  # type: ignore[attr-defined]
    assert post.amorsize_status == "success"  # type: ignore[attr-defined]
    assert post.amorsize_items_completed == 100  # type: ignore[attr-defined]
    assert post.amorsize_throughput_items_per_second > 0  # type: ignore[attr-defined]
    assert "100 items" in post.getMessage()
    assert max(r.amorsize_chunk_size for r in chunks) == 20  # type: ignore[attr-defined]
    assert chunks[-1].amorsize_worker_key.startswith("pid:")  # type: ignore[attr-defined]
    assert "done by worker" in chunks[-1].getMessage()
    ids = {r.amorsize_execution_id for r in handler.records}  # type: ignore[attr-defined]
    assert len(ids) == 1


def test_no_chunk_records_above_debug(logger: tuple[logging.Logger, ListHandler]) -> None:
    log, handler = logger
    log.setLevel(logging.INFO)
    # executor and chunk size fixed: no plan change, so two records
    execute(spin, range(60), LoggingHook(log), executor_type="thread", n_jobs=2, chunksize=10)
    assert [r.amorsize_event for r in handler.records] == [  # type: ignore[attr-defined]
        "pre_execute",
        "post_execute",
    ]


def test_error_record(logger: tuple[logging.Logger, ListHandler]) -> None:
    log, handler = logger
    with pytest.raises(Boom):
        execute(raise_on_13, range(40), LoggingHook(log, level=logging.WARNING),
                executor_type="serial")
    errors = [r for r in handler.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    record = errors[0]
    assert record.amorsize_error_type == "Boom"  # type: ignore[attr-defined]
    assert record.amorsize_status == "error"  # type: ignore[attr-defined]
    assert "raise_on_13" in record.amorsize_error_traceback  # type: ignore[attr-defined]
    assert "item 13 is unlucky" in record.getMessage()
    post = handler.records[-1]
    assert post.levelno == logging.WARNING
    assert post.amorsize_status == "error"  # type: ignore[attr-defined]


def test_json_formatter_picks_up_the_figures() -> None:
    stream = io.StringIO()
    log = logging.getLogger("amorsize.test.json")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    try:
        execute(spin, range(30), LoggingHook(log), executor_type="serial", chunksize=30)
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["amorsize_event"] for line in lines] == ["pre_execute", "post_execute"]
    assert lines[0]["amorsize_executor_type"] == "serial"
    assert lines[1]["amorsize_items_completed"] == 30
    assert all(key.startswith("amorsize_") or key in ("message", "level") for key in lines[1])


def test_default_logger_and_validation(caplog: pytest.LogCaptureFixture) -> None:
    hook = LoggingHook()
    assert hook.logger.name == "amorsize"
    with caplog.at_level(logging.INFO, logger="amorsize"):
        execute(spin, range(10), hook, executor_type="serial")
    assert [r.amorsize_event for r in caplog.records] == [  # type: ignore[attr-defined]
        "pre_execute",
        "post_execute",
    ]
    assert LoggingHook("custom.name").logger.name == "custom.name"
    with pytest.raises(TypeError, match="logger"):
        LoggingHook(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="level"):
        LoggingHook(level="INFO")  # type: ignore[arg-type]


def test_plan_changes_are_logged_with_the_reason(
        logger: tuple[logging.Logger, ListHandler]) -> None:
    log, handler = logger
    log.setLevel(logging.INFO)
    plans: list[HookContext] = []
    manager = HookManager()
    manager.register(HookEvent.ON_PLAN_CHANGE, plans.append)
    # threads fixed, no chunk size: the measured task size is published as a plan change
    execute(spin, range(200), hooks=[manager, LoggingHook(log)], executor_type="thread",
            n_jobs=2)
    assert plans, "the run revised no plan"
    events = [r.amorsize_event for r in handler.records]  # type: ignore[attr-defined]
    assert events == ["pre_execute"] + ["on_plan_change"] * len(plans) + ["post_execute"]
    revised = handler.records[1:-1]
    for record, ctx in zip(revised, plans, strict=True):
        assert record.levelno == logging.INFO
        assert record.amorsize_reason == ctx.metadata["reason"]  # type: ignore[attr-defined]
        assert record.amorsize_chunksize == ctx.chunksize  # type: ignore[attr-defined]
        assert record.amorsize_n_jobs == ctx.n_jobs == 2  # type: ignore[attr-defined]
        assert record.amorsize_executor_type == "thread"  # type: ignore[attr-defined]
        assert record.getMessage().endswith(ctx.metadata["reason"])
        assert f"plan revised to thread n_jobs=2 chunksize={ctx.chunksize}" in record.getMessage()
    ids = {r.amorsize_execution_id for r in handler.records}  # type: ignore[attr-defined]
    assert len(ids) == 1


def test_the_run_record_carries_the_speedups(
        logger: tuple[logging.Logger, ListHandler]) -> None:
    log, handler = logger
    log.setLevel(logging.INFO)
    ends: list[HookContext] = []
    manager = HookManager()
    manager.register(HookEvent.POST_EXECUTE, ends.append)
    execute(spin, range(100), hooks=[manager, LoggingHook(log)], executor_type="thread",
            n_jobs=2, chunksize=10)
    [ctx] = ends
    post = handler.records[-1]
    assert post.amorsize_worker_count == ctx.worker_count >= 1  # type: ignore[attr-defined]
    assert post.amorsize_chunks_completed == 10  # type: ignore[attr-defined]
    assert post.amorsize_actual_speedup == ctx.actual_speedup  # type: ignore[attr-defined]
    assert post.amorsize_parallel_efficiency == ctx.parallel_efficiency  # type: ignore[attr-defined]
    assert post.amorsize_first_estimated_speedup is None  # type: ignore[attr-defined]
