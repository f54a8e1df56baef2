"""The demo application: choosing its jobs, its failure rate, its SIGTERM shutdown."""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

import amorsize.demo
from amorsize.cli import main
from amorsize.demo import DEFAULT_FAILURE_RATE, JOB_NAMES, select_jobs
from tests.demo_process import DEADLINE, DemoProcess
from tests.otlp_receiver import OTLPReceiver
from tests.servers import http_get

# ------------------------------------------------------------------ choosing jobs


def test_all_jobs_run_by_default_in_the_mix_order() -> None:
    assert [job.name for job in select_jobs()] == list(JOB_NAMES)
    assert JOB_NAMES == ("cheap", "heavy", "io", "uneven", "flaky")


def test_a_selection_keeps_the_mix_order() -> None:
    assert [job.name for job in select_jobs(["flaky", "heavy"])] == ["heavy", "flaky"]


@pytest.mark.parametrize("names", [["nope"], ["heavy", "Flaky"], []])
def test_unknown_or_empty_job_selections_are_refused(names: list[str]) -> None:
    with pytest.raises(ValueError, match="demo job"):
        select_jobs(names)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_failure_rates_outside_zero_to_one_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        select_jobs(None, rate)


@pytest.mark.parametrize(("rate", "unlucky_runs"), [(0.0, 0), (1.0, 50)])
def test_the_failure_rate_decides_how_many_flaky_runs_have_an_unlucky_item(
    rate: float, unlucky_runs: int
) -> None:
    (flaky,) = select_jobs(["flaky"], rate)
    rng = random.Random(1)
    runs = [list(flaky.make_items(rng)) for _ in range(50)]
    assert sum(any(unlucky for _, unlucky in items) for items in runs) == unlucky_runs
    assert all(len(items) == 200 for items in runs)


def test_the_default_failure_rate_is_the_old_one() -> None:
    assert DEFAULT_FAILURE_RATE == 0.35


def test_cli_passes_jobs_and_failure_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(amorsize.demo, "run_demo", lambda **kwargs: calls.append(kwargs) or 0)
    assert main(["demo", "--jobs", "flaky, heavy", "--failure-rate", "1"]) == 0
    assert main(["demo"]) == 0
    assert (calls[0]["jobs"], calls[0]["failure_rate"]) == (["flaky", "heavy"], 1.0)
    assert (calls[1]["jobs"], calls[1]["failure_rate"]) == (None, DEFAULT_FAILURE_RATE)


@pytest.mark.parametrize("argv", [
    ["demo", "--jobs", "flaky,nope"],
    ["demo", "--jobs", ","],
    ["demo", "--failure-rate", "1.01"],
    ["demo", "--failure-rate", "often"],
])
def test_cli_refuses_bad_jobs_and_rates(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: amorsize" in capsys.readouterr().err


# ------------------------------------------------------------------ SIGTERM


def test_first_sigterm_requests_a_stop_the_second_interrupts() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with amorsize.demo._stop_on_sigterm() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_until(lambda: stop.requested)
        with pytest.raises(amorsize.demo.DemoTerminated):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_until(lambda: False)
    assert signal.getsignal(signal.SIGTERM) is previous


def _sleep_when_ready(ready: Any, seconds: float) -> None:
    ready.set()
    time.sleep(seconds)


def test_a_forked_worker_still_dies_of_sigterm() -> None:
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    with amorsize.demo._stop_on_sigterm() as stop:
        worker = context.Process(target=_sleep_when_ready, args=(ready, DEADLINE))
        worker.start()
        # Wait until the child runs Python code: CPython drops a signal that arrives
        # between fork() and its after-fork reinitialisation, whatever the handler.
        assert ready.wait(DEADLINE)
        worker.terminate()  # SIGTERM, as a pool shutting down sends it
        worker.join(DEADLINE)
        assert worker.exitcode == -signal.SIGTERM
        assert not stop.requested


def _wait_until(condition: Callable[[], bool]) -> None:
    """Let the main thread run Python code (and signal handlers) until `condition`."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


# ------------------------------------------------------------------ the real process


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _in_progress(port: int, function: str) -> float:
    """amorsize_executions_in_progress of `function`, from the demo's /metrics."""
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    match = re.search(rf'^amorsize_executions_in_progress{{function="{re.escape(function)}"}} '
                      r"(\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_sigterm_finishes_the_running_job_then_stops_cleanly(otlp: OTLPReceiver) -> None:
    with DemoProcess("--jobs", "heavy", "--otlp-endpoint", otlp.url, "--seed", "5") as demo:
        port = demo.metrics_port()
        demo.wait_for_line(r"^heavy ")  # one run finished
        # SIGTERM while a later run is in flight (with its worker processes, if the
        # machine has cores to spare for them).
        deadline = time.monotonic() + DEADLINE
        while _in_progress(port, "amorsize.demo:heavy_item") < 1:
            assert time.monotonic() < deadline and demo.process.poll() is None, demo.output()
            time.sleep(0.01)
        workers = psutil.Process(demo.process.pid).children(recursive=True)
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Accept": "application/openmetrics-text"})
        code = demo.stop(signal.SIGTERM)
    output = demo.output()
    assert code == 0, output
    assert "stopped by SIGTERM" in output, output
    # The run in flight at SIGTERM finished (it was not cancelled), then the demo stopped.
    finished = re.search(r"demo finished: (\d+) jobs succeeded, 0 failed", output)
    assert finished and int(finished.group(1)) >= 2, output
    assert int(finished.group(1)) == len(re.findall(r"^heavy ", output, re.MULTILINE))
    deadline = time.monotonic() + DEADLINE
    while not all(_gone(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(worker) for worker in workers), [w.pid for w in workers]
    # The spans of the finished runs were flushed before the process ended.
    names = [span.name for _, _, span in otlp.spans()]
    assert "amorsize.execute" in names and "amorsize.chunk" in names, names
    # The application turned prometheus_client's _created series off.
    assert status == 200
    assert "amorsize_executions_total{" in metrics
    assert "_created" not in metrics
