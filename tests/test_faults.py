"""Faults, each found by fault injection: the parent dying, SIGTERM, hung items, bounds.

Tests that need a process to die run the caller in a subprocess and kill it. None of
them asserts how long anything took: they wait for a condition, with a generous
deadline, and fail if it never comes.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from amorsize import HookEvent, HookManager, TaskTimeoutError, WorkerDiedError, execute
from tests.workloads import exit_on_13, nap, pid_of

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 30.0  # seconds: generous, for a busy machine; never the thing tested


def gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


# A shell run under nohup ignores SIGHUP, and an ignored signal stays ignored across
# exec: the caller would never die of it. The tests send signals with their default
# action in mind.
# SIGUSR1 makes the caller print every thread's stack to stderr: what a caller that
# never got as far as a test expected was doing (see Caller.worker_pids).
DEFAULT_SIGNAL_ACTIONS = (
    "import faulthandler as _faulthandler, signal as _signal\n"
    "_signal.signal(_signal.SIGHUP, _signal.SIG_DFL)\n"
    "_signal.signal(_signal.SIGTERM, _signal.SIG_DFL)\n"
    "_faulthandler.register(_signal.SIGUSR1, all_threads=True)\n"
)


class Caller:
    """A Python program running `script` in a subprocess (its own session)."""

    def __init__(self, script: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DEFAULT_SIGNAL_ACTIONS + textwrap.dedent(script)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)

    def lines(self) -> Iterator[str]:
        """Its stdout, line by line, as it comes."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            yield line.strip()

    def worker_pids(self, count: int) -> set[int]:
        """Read lines until `count` WORKER lines named the worker pids, or READY said
        the caller listed all it has. A caller that gets to neither within 2 x DEADLINE
        has its stacks printed (SIGUSR1), is killed, and the test fails with them."""
        stuck = threading.Timer(2 * DEADLINE, self._dump_and_kill)
        stuck.start()
        pids: set[int] = set()
        try:
            for line in self.lines():
                if line.startswith("WORKER"):
                    pids.add(int(line.split()[1]))
                    if len(pids) == count:
                        return pids
                elif line == "READY" and pids:
                    return pids
        finally:
            stuck.cancel()
        out, err = self.process.communicate()
        pytest.fail(f"the caller ended before naming its workers (found {pids});\n"
                    f"stdout: {out}\nstderr: {err}")

    def _dump_and_kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(2.0)  # faulthandler writes at once; this only lets it finish
            os.killpg(self.process.pid, signal.SIGKILL)

    def end(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate()


@pytest.fixture
def caller_factory() -> Iterator[Any]:
    made: list[Caller] = []

    def make(script: str) -> Caller:
        made.append(Caller(script))
        return made[-1]

    yield make
    for caller in made:
        caller.end()


RUNNING = """
    import os, signal
    from amorsize import HookEvent, HookManager, execute
    from tests.workloads import nap
    hooks = HookManager()
    hooks.register(HookEvent.ON_WORKER_START, lambda c: print("WORKER", c.pid, flush=True))
    hooks.register(HookEvent.POST_EXECUTE, lambda c: print("POST", c.status, flush=True))
    {setup}
    execute(nap, range(1_000_000), hooks, executor_type="process", n_jobs=2, chunksize=1)
    print("FINISHED", flush=True)
"""

# The warm pool's workers are the caller's children, listed whether or not each ran a
# task (with 40 short items one worker can run them all while the other starts).
WARM_AND_IDLE = """
    import time
    import psutil
    from amorsize import execute
    from tests.workloads import pid_of
    execute(pid_of, range(40), executor_type="process", n_jobs=2, keep_workers=True)
    for child in psutil.Process().children():
        print("WORKER", child.pid, flush=True)
    print("READY", flush=True)
    time.sleep(600)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("script", [RUNNING.format(setup=""), WARM_AND_IDLE],
                         ids=["during-a-run", "warm-and-idle"])
def test_workers_end_when_their_parent_dies(caller_factory: Any, sig: str,
                                            script: str) -> None:
    caller = caller_factory(script)
    workers = caller.worker_pids(2)
    os.kill(caller.process.pid, getattr(signal, sig))
    # A supervisor reading the caller's stdout sees its end: no worker holds it open.
    caller.process.communicate(timeout=DEADLINE)
    wait_until(lambda: all(gone(pid) for pid in workers), f"workers {workers} ended")


RUNNING_IN_A_THREAD = """
    import threading
    from amorsize import HookEvent, HookManager, execute
    from tests.workloads import nap
    hooks = HookManager()
    hooks.register(HookEvent.ON_WORKER_START, lambda c: print("WORKER", c.pid, flush=True))
    def job():
        execute(nap, range(1_000_000), hooks, executor_type="process", n_jobs=2, chunksize=1)
    runner = threading.Thread(target=job)
    runner.start()
    runner.join()
"""


@pytest.mark.timeout(120)
def test_workers_of_a_pool_started_from_another_thread_end_when_their_parent_dies(
        caller_factory: Any) -> None:
    """Linux's parent-death signal follows the thread that forked, so it is not armed
    here: the worker's own lifeline thread (amorsize/lifeline.py) ends the worker."""
    caller = caller_factory(RUNNING_IN_A_THREAD)
    workers = caller.worker_pids(2)
    os.kill(caller.process.pid, signal.SIGKILL)
    caller.process.communicate(timeout=DEADLINE)
    wait_until(lambda: all(gone(pid) for pid in workers), f"workers {workers} ended")


@pytest.mark.timeout(120)
def test_sigterm_cancels_the_run_then_ends_the_process_as_sigterm(caller_factory: Any) -> None:
    caller = caller_factory(RUNNING.format(setup=""))
    workers = caller.worker_pids(2)
    caller.process.send_signal(signal.SIGTERM)
    out, err = caller.process.communicate(timeout=DEADLINE)
    assert caller.process.returncode == -signal.SIGTERM, err
    assert out.splitlines()[-1] == "POST cancelled"
    assert "FINISHED" not in out
    wait_until(lambda: all(gone(pid) for pid in workers), "workers ended")


@pytest.mark.timeout(120)
def test_an_applications_own_sigterm_handler_is_respected(caller_factory: Any) -> None:
    setup = """
    def stop(signum, frame):
        print("APP HANDLER", flush=True)
        raise SystemExit(3)
    signal.signal(signal.SIGTERM, stop)
    """
    caller = caller_factory(RUNNING.format(setup=textwrap.indent(textwrap.dedent(setup),
                                                                 "    ").strip()))
    workers = caller.worker_pids(2)
    caller.process.send_signal(signal.SIGTERM)
    out, err = caller.process.communicate(timeout=DEADLINE)
    assert "APP HANDLER" in out.splitlines()
    assert caller.process.returncode == 3, err  # the application's decision
    assert out.splitlines()[-1].startswith("POST")
    wait_until(lambda: all(gone(pid) for pid in workers), "workers ended")


# ------------------------------------------------------------------ hung items


def hang_on_3(x: int) -> int:
    """Item 3 never returns."""
    if x == 3:
        time.sleep(3600)
    return x


@pytest.mark.timeout(120)
def test_a_hung_task_in_a_process_times_out_and_its_worker_is_killed(
        no_leftover_children: None) -> None:
    events = HookManager()
    errors: list[Any] = []
    posts: list[Any] = []
    events.register(HookEvent.ON_ERROR, errors.append)
    events.register(HookEvent.POST_EXECUTE, posts.append)
    with pytest.raises(TaskTimeoutError, match="item 3 of the input") as caught:
        execute(hang_on_3, range(8), events, executor_type="process", n_jobs=2,
                chunksize=1, task_timeout=2.0)
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.start_index, caught.value.item_count) == (3, 1)
    assert "worker process was killed" in str(caught.value)
    assert len(errors) == 1 and errors[0].error_type == "TaskTimeoutError"
    assert [p.status for p in posts] == ["error"]


THREAD_HANG = """
    import time
    from amorsize import TaskTimeoutError, execute
    def hang(x):
        if x == 3:
            time.sleep(3600)
        return x
    try:
        execute(hang, range(8), executor_type="thread", n_jobs=2, chunksize=1,
                task_timeout=1.0)
    except TaskTimeoutError as error:
        print("TIMEOUT", error, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_hung_thread_times_out_and_never_holds_up_the_exit(caller_factory: Any) -> None:
    caller = caller_factory(THREAD_HANG)
    out, err = caller.process.communicate(timeout=DEADLINE)  # the interpreter exits
    assert caller.process.returncode == 0, err
    assert "TIMEOUT" in out and "cannot be killed" in out


@pytest.mark.timeout(120)
def test_ctrl_c_with_a_hung_thread_ends_the_program(caller_factory: Any) -> None:
    caller = caller_factory("""
        import signal, time
        from amorsize import HookEvent, HookManager, execute
        signal.signal(signal.SIGINT, signal.default_int_handler)
        hooks = HookManager()
        hooks.register(HookEvent.PRE_EXECUTE, lambda c: print("STARTED", flush=True))
        def hang(x):
            time.sleep(3600)
        execute(hang, range(4), hooks, executor_type="thread", n_jobs=2, chunksize=1)
    """)
    assert next(caller.lines()) == "STARTED"
    time.sleep(0.5)  # let the threads take their items (not a measurement)
    caller.process.send_signal(signal.SIGINT)
    _, err = caller.process.communicate(timeout=DEADLINE)
    assert "KeyboardInterrupt" in err


@pytest.mark.parametrize("timeout", [0, -1, math.nan, "5"])
def test_a_bad_task_timeout_names_the_parameter(timeout: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="task_timeout"):
        execute(abs, range(3), task_timeout=timeout)


# ------------------------------------------------------------------ crashes, bounds


@pytest.mark.timeout(60)
def test_a_crash_with_processes_asked_for_never_reaches_the_caller(
        no_leftover_children: None) -> None:
    # os._exit on item 13: with executor_type="process" it runs in a worker, never here.
    with pytest.raises(WorkerDiedError):
        execute(exit_on_13, range(2000), executor_type="process", n_jobs=2)


def test_never_more_workers_than_items(no_leftover_children: None) -> None:
    seen: list[Any] = []
    hooks = HookManager()
    hooks.register(HookEvent.PRE_EXECUTE, seen.append)
    hooks.register(HookEvent.POST_EXECUTE, seen.append)
    results = execute(pid_of, range(2), hooks, executor_type="process", n_jobs=8)
    assert [x for x, _ in results] == [0, 1]
    assert seen[0].n_jobs == 2 and seen[-1].worker_count <= 2


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n_jobs": 5000}, ValueError, "n_jobs"),
        ({"sample_size": 10**9}, ValueError, "sample_size"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"progress_interval": math.nan}, ValueError, "progress_interval"),
        ({"return_optimization_result": "no"}, TypeError, "return_optimization_result"),
        ({"verbose": "loud"}, TypeError, "verbose"),
        ({"report": 42}, TypeError, "report"),
    ],
)
def test_bounds_name_the_parameter(kwargs: dict[str, Any], error: type[Exception],
                                   name: str) -> None:
    with pytest.raises(error, match=name):
        execute(abs, range(3), **kwargs)


def test_an_input_too_long_to_index_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="data has more items than Python can index"):
        execute(abs, range(10**19))


def test_the_dry_run_keeps_its_cost_per_item_at_the_largest_sample() -> None:
    results, decision = execute(abs, range(20_000), sample_size=10_000,
                                return_optimization_result=True)
    assert results == list(range(20_000))
    assert decision.figures.sampled_items is not None
    assert decision.figures.sampled_items <= 10_000


def test_nap_items_fixed_to_threads_all_run_in_threads() -> None:
    import threading

    results = execute(lambda x: threading.current_thread().name, range(20),
                      executor_type="thread", n_jobs=2)
    assert all(name.startswith("amorsize") for name in results)
    assert execute(nap, range(4), executor_type="thread", n_jobs=2) == [0, 1, 2, 3]


@pytest.mark.timeout(60)
def test_a_child_forked_during_a_run_dies_of_sigterm_instead_of_raising() -> None:
    """A worker forked while a run's SIGTERM handler is installed, and signalled
    before its initializer resets it, ends as SIGTERM's default action ends it (a
    raise there could unwind the child into its parent's code)."""
    from amorsize.signals import sigterm_cancels_run

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the handler is installed from the main thread only")
    with sigterm_cancels_run():
        pid = os.fork()
        if pid == 0:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
                os._exit(3)  # the signal did not end this child
            except BaseException:
                os._exit(4)  # it raised instead
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
