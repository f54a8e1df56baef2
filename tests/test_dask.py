"""execute(executor=client.get_executor()) on a real dask.distributed LocalCluster."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster

from amorsize import HookContext, HookEvent, HookManager, execute
from amorsize.integrations.progress import ProgressBarHook
from tests.workloads import Boom, nap, raise_on_13, spin


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two single-threaded worker processes on loopback, no dashboard."""
    cluster = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    dask_client = Client(cluster)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


def recorder() -> tuple[HookManager, list[HookContext]]:
    """A HookManager that keeps every event."""
    events: list[HookContext] = []
    manager = HookManager()
    for event in HookEvent:
        manager.register(event, events.append)
    return manager, events


def of(events: list[HookContext], event: HookEvent) -> list[HookContext]:
    """The events of one kind, in order."""
    return [ctx for ctx in events if ctx.event is event]


def worker_addresses(client: Client) -> set[str]:
    """The addresses of the cluster's workers."""
    return set(client.scheduler_info()["workers"])


def test_results_order_and_events_all_on_dask_workers(client: Client) -> None:
    manager, events = recorder()
    data = list(range(200))
    results = execute(spin, data, manager, executor=client.get_executor(), chunksize=10)
    assert results == [spin(x) for x in data]

    counts = Counter(ctx.event for ctx in events)
    assert counts[HookEvent.PRE_EXECUTE] == 1
    assert counts[HookEvent.POST_EXECUTE] == 1
    assert counts[HookEvent.ON_ERROR] == 0
    chunks = of(events, HookEvent.ON_CHUNK_COMPLETE)
    assert sorted(ctx.chunk_id for ctx in chunks) == list(range(20))
    assert sum(ctx.chunk_size for ctx in chunks) == 200
    assert all(ctx.chunk_time > 0 for ctx in chunks)

    addresses = worker_addresses(client)
    starts = of(events, HookEvent.ON_WORKER_START)
    assert {ctx.metadata["worker_key"] for ctx in starts} <= addresses
    assert len(starts) == counts[HookEvent.ON_WORKER_END] >= 1
    assert {ctx.metadata["worker_key"] for ctx in chunks} <= addresses
    assert all(ctx.metadata["worker_key"].startswith("tcp://127.0.0.1:") for ctx in chunks)

    pre = of(events, HookEvent.PRE_EXECUTE)[0]
    assert pre.metadata["executor_type"] == "external"
    assert pre.n_jobs == 2
    post = of(events, HookEvent.POST_EXECUTE)[0]
    assert post.status == "success"
    assert post.items_completed == post.results_count == 200
    final = of(events, HookEvent.ON_PROGRESS)[-1]
    assert final.percent_complete == 100.0
    assert final.items_remaining == 0


def test_optimizer_asks_the_executor_for_its_worker_count(client: Client) -> None:
    manager, events = recorder()
    results, decision = execute(
        nap, range(60), manager, executor=client.get_executor(), return_optimization_result=True
    )
    assert results == list(range(60))
    assert decision.executor_type == "external"
    assert decision.n_jobs == sum(client.nthreads().values()) == 2
    assert not any("could not ask the executor" in w for w in decision.warnings)
    chunks = of(events, HookEvent.ON_CHUNK_COMPLETE)
    # executor= was given: every item ran on the cluster, none in this process
    assert chunks and not any(ctx.sampled for ctx in chunks)
    assert {ctx.metadata["worker_key"] for ctx in chunks} <= worker_addresses(client)


def test_failing_item_raises_the_same_exception_type(client: Client) -> None:
    manager, events = recorder()
    with pytest.raises(Boom, match="item 13 is unlucky") as raised:
        execute(raise_on_13, range(100), manager, executor=client.get_executor(), chunksize=5)
    assert "raise_on_13" in str(raised.value.__cause__)  # the worker's traceback
    errors = of(events, HookEvent.ON_ERROR)
    assert len(errors) == 1
    assert isinstance(errors[0].error, Boom)
    assert errors[0].status == "error"
    assert "raise_on_13" in (errors[0].error_traceback or "")
    assert errors[0].chunk_id == 2  # items 10..14
    posts = of(events, HookEvent.POST_EXECUTE)
    assert [ctx.status for ctx in posts] == ["error"]
    # the caller's cluster stays usable
    assert execute(spin, range(20), executor=client.get_executor(), chunksize=5) == [
        spin(x) for x in range(20)
    ]


def test_function_shipped_by_value_and_progress_bar(client: Client) -> None:
    offset = 7
    stream = io.StringIO()
    bar = ProgressBarHook(file=stream, mininterval=0, desc="dask")
    results = execute(
        lambda x: x + offset, iter(range(50)), bar, executor=client.get_executor(), chunksize=5
    )
    assert results == [x + offset for x in range(50)]
    assert "50/50" in stream.getvalue()  # the bar ran to the end and was drawn


def test_generator_input_streams_through_the_cluster(client: Client) -> None:
    seen: list[Any] = []
    manager = HookManager()
    manager.register(HookEvent.PRE_EXECUTE, lambda ctx: seen.append(ctx.total_items))
    data = (x for x in range(45))
    results = execute(spin, data, manager, executor=client.get_executor(), chunksize=4)
    assert results == [spin(x) for x in range(45)]
    assert seen == [None]
