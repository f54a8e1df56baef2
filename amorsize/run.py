"""One execute() call: decide how to start, run the tasks, keep deciding, publish.

The decision path, in order:
1. **Start** (`start.decide_start`). In automatic mode the first items run in the
   calling process (the dry run) and the cost model picks the executor and the worker
   count; with an executor fixed or a warm pool kept for the function, nothing runs in
   the calling process and the pool's first tasks are small probes.
2. **Run.** Tasks are sized from what the workers measured (`policy.TaskSizer`),
   handed out and taken back by `dispatch.TaskFlow`.
3. **Revise** (`revision.Reviser`). From the reports the remaining items may move to
   a better executor (automatic mode), the task size is republished when the item cost
   moved, and the speedup estimate is revised; each change is an ON_PLAN_CHANGE event
   and a `PlanRevision`.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterable
from typing import Any, Optional

from amorsize import costmodel, policy, start, system
from amorsize.arguments import RunOptions
from amorsize.dispatch import InputCursor, TaskFailed, TaskFlow, window_for
from amorsize.errors import ExecutionCancelled, WorkerTraceback, name_the_item
from amorsize.hook_manager import RunHooks
from amorsize.input_slice import readable_in_place
from amorsize.lanes import Lane, close_lane, open_lane
from amorsize.names import STATUS_CANCELLED, STATUS_ERROR, STATUS_SUCCESS, function_label
from amorsize.optimizer import OptimizationResult
from amorsize.publisher import RunIdentity, RunPublisher
from amorsize.revision import Reviser
from amorsize.sampling import Sample, known_length
from amorsize.signals import Terminated, end_as_sigterm, sigterm_cancels_run
from amorsize.worker import ChunkReport, run_task

# Tasks in the calling process (serial) aim at this much work at least: few tasks, few
# result lists to join. Over a list, tuple or range a task is stopped at that time;
# otherwise it is cut at the count planned for it and stops at twice its planned time
# (policy). Either way it stops sooner when its items turn dear enough for a pool.
SERIAL_TASK_SECONDS = 1.0
# Items cheaper than this run as a comprehension in the calling process (a failing
# item is then found from the traceback, where it can be).
EXACT_BELOW_SECONDS = 2e-6
# execute_iter() in the calling process: most results one task holds at once.
STREAMING_SERIAL_CHUNK = 65_536


class Run:
    """One execute(): `results()` yields the results task by task, in input order."""

    def __init__(self, func: Callable[[Any], Any], data: Iterable[Any], hooks: RunHooks,
                 options: RunOptions) -> None:
        self.func = func
        self.data = data
        self.hooks = hooks
        self.options = options
        self.optimization: Optional[OptimizationResult] = None
        self.lanes: list[Lane] = []
        self.costs = policy.ItemCosts(gil=system.gil_enabled())
        self.reviser = Reviser(options, self.costs)
        self.machine: costmodel.MachineCosts = costmodel.MachineCosts(1, 0, 0.0, 0.0, 0.0)

    # ------------------------------------------------------------------ the run

    def results(self) -> Generator[list[Any], None, None]:
        """Decide, run, publish; yield each task's results in input order."""
        terminated = False
        try:
            with sigterm_cancels_run():
                yield from self._results()
        except Terminated:
            terminated = True
            raise
        finally:
            if terminated:
                end_as_sigterm()

    def _results(self) -> Generator[list[Any], None, None]:
        o = self.options
        started, wall_started = time.perf_counter(), time.time()
        total = o.total_items if o.total_items is not None else known_length(self.data)
        identity = RunIdentity(uuid.uuid4().hex, function_label(self.func), started,
                               wall_started)
        publisher = RunPublisher(self.hooks, identity, total_items=total,
                                 progress_interval=o.progress_interval)
        try:
            optimization, sample = self._decide(total, started)
        except BaseException as failure:
            self._failed_while_deciding(failure, publisher, total, started)
            raise
        self.optimization = optimization
        self.reviser.begin(optimization, self.machine, started)
        publisher.pre_execute(optimization, optimization_seconds=optimization.optimization_seconds)
        status, produced = STATUS_ERROR, 0
        try:
            for results in self._execute(optimization, sample, total, publisher):
                produced += len(results)
                yield results
            status = STATUS_SUCCESS
        except TaskFailed as failed:
            error = self._task_error(failed.report, publisher)
            raise error from error.__cause__
        except GeneratorExit:
            status = STATUS_CANCELLED
            publisher.error(ExecutionCancelled("the consumer stopped reading results"), None,
                            status=status)
            raise
        except (KeyboardInterrupt, Terminated) as interrupt:
            status = STATUS_CANCELLED
            publisher.error(interrupt, None, status=status)
            raise
        except BaseException as error:
            publisher.error(error, traceback.format_exc(), status=STATUS_ERROR)
            raise
        finally:
            self._finish(status, produced, publisher)

    def _finish(self, status: str, produced: int, publisher: RunPublisher) -> None:
        now = time.perf_counter()
        graceful = status == STATUS_SUCCESS
        for lane in self.lanes:
            close_lane(lane, graceful, self.options.keep_workers)
        capacity = sum(lane.capacity_seconds(now) for lane in self.lanes)
        elapsed = now - publisher.identity.started
        if self.optimization is not None:
            self.optimization.final_estimated_speedup = self.reviser.final_estimate
            self.optimization.actual_speedup = (self.costs.serial_seconds / elapsed
                                                if elapsed > 0 else None)
        publisher.finish(status, produced, serial_seconds=self.costs.serial_seconds,
                         capacity_seconds=capacity,
                         final_estimate=self.reviser.final_estimate)

    def _task_error(self, report: ChunkReport, publisher: RunPublisher) -> BaseException:
        """The exception to raise for a task whose function raised, its item named."""
        error = report.error or RuntimeError("a task failed without an exception")
        position = (report.start_index + report.error_index
                    if report.error_index is not None else None)
        error = name_the_item(error, position, report.start_index + report.done,
                              max(1, report.item_count - report.done), report.chunk_id)
        publisher.chunk(report)
        publisher.error(error, report.error_traceback, status=STATUS_ERROR, report=report)
        if report.error_traceback and report.pid != os.getpid():
            error.__cause__ = WorkerTraceback(report.error_traceback)
        return error

    # ------------------------------------------------------------------ deciding

    def _decide(self, total: Optional[int], started: float
                ) -> tuple[OptimizationResult, Optional[Sample]]:
        o = self.options
        method = (o.mp_context.get_start_method() if o.mp_context is not None
                  else system.start_method())
        self.machine = system.machine_costs(method)
        optimization, sample = start.decide_start(self.func, self.data, o, total,
                                                  self.machine, method, started)
        if sample is not None:
            self.costs.prior = sample.workload(1)
        return optimization, sample

    def _failed_while_deciding(self, failure: BaseException, publisher: RunPublisher,
                               total: Optional[int], started: float) -> None:
        """PRE_EXECUTE, ON_ERROR and POST_EXECUTE for a run that failed while deciding."""
        interrupted = isinstance(failure, (KeyboardInterrupt, Terminated))
        status = STATUS_CANCELLED if interrupted else STATUS_ERROR
        self.optimization = OptimizationResult(
            n_jobs=self.options.n_jobs or 1, chunksize=self.options.chunksize or 1,
            executor_type=self.options.executor_type or "serial",
            estimated_speedup=math.nan, total_items=total,
            reason=f"The run failed while deciding how to run: {type(failure).__name__}.",
            optimization_seconds=time.perf_counter() - started)
        publisher.pre_execute(self.optimization, optimization_seconds=time.perf_counter()
                              - started)
        publisher.error(failure, None if interrupted else traceback.format_exc(),
                        status=status)
        publisher.finish(status, 0, serial_seconds=0.0, capacity_seconds=0.0,
                         final_estimate=None)

    # ------------------------------------------------------------------ running

    def _execute(self, optimization: OptimizationResult, sample: Optional[Sample],
                 total: Optional[int], publisher: RunPublisher
                 ) -> Generator[list[Any], None, None]:
        o = self.options
        done = 0
        lane = self._open(optimization.executor_type, optimization.n_jobs)
        reported = sample is not None and (sample.results or sample.error is not None)
        if sample is not None and reported:
            report = sample.report(sampled=lane.kind != "serial")
            if sample.error is not None:
                raise TaskFailed(report)
            publisher.chunk(report)
            self.costs.add(report, "serial")
            done = len(sample.results)
            yield sample.results
        cursor = InputCursor(self.data, done, sample.rest if sample is not None and not
                             isinstance(self.data, (list, tuple, range)) else None)
        flow = TaskFlow(cursor, window_for(lane.workers, o.max_in_flight), o.task_timeout)
        flow.set_first(done)
        if reported:
            flow.next_chunk_id()  # the dry run was task 0
        sizer = self._sizer(lane, total)
        review_at = policy.MIN_EVIDENCE_TASKS * lane.workers
        while not flow.done:
            if lane.kind == "serial":
                self._run_here(lane, flow, sizer, total, publisher)
                # The task size of a serial run only sets how often it reports: carried
                # in the events, not a plan change of its own.
                publisher.chunksize = sizer.planned_size(self.costs) or publisher.chunksize
            else:
                self._submit(lane, flow, sizer, total, publisher)
                if not flow.in_flight and not flow.done and not flow.ready_now():
                    raise RuntimeError("amorsize: no task in flight and no result ready, "
                                       "but the input is not done (please report this)")
                for report in flow.collect():
                    self._note_start(report, lane)
                    publisher.chunk(report)
                    self.costs.add(report, report.executor_kind)
                self.reviser.follow_task_size(lane, sizer, flow, total, publisher)
            yield from flow.results()
            self._close_drained(flow, lane)
            if o.automatic and (lane.kind == "serial" or self.costs.tasks >= review_at):
                review_at = int(self.costs.tasks * 1.5) + 1
                moved = self._review(lane, flow, total, publisher)
                if moved is not None:
                    lane = moved
                    flow.window = max(flow.window, window_for(lane.workers, o.max_in_flight))
                    sizer = self._sizer(lane, total)
        if self.reviser.final_estimate is None:
            self.reviser.final_estimate = publisher.estimated_speedup

    def _open(self, kind: str, workers: int) -> Lane:
        lane = open_lane(kind, workers, self.func, self.options)
        self.lanes.append(lane)
        return lane

    def _sizer(self, lane: Lane, total: Optional[int]) -> policy.TaskSizer:
        o = self.options
        target = o.target_chunk_duration
        if lane.kind == "serial":
            target = max(target, SERIAL_TASK_SECONDS)
        overhead = costmodel.task_overhead(lane.kind, self.machine)
        return policy.TaskSizer(target_chunk_duration=target, workers=lane.workers,
                                task_overhead=overhead, total_items=total,
                                fixed_chunksize=o.chunksize)

    def _run_here(self, lane: Lane, flow: TaskFlow, sizer: policy.TaskSizer,
                  total: Optional[int], publisher: RunPublisher) -> None:
        """One task in the calling process (sized by `policy.TaskSizer.serial_task`)."""
        rest = None
        if (not self.options.streaming and readable_in_place(self.data)
                and not flow.cursor.given_back):
            rest = len(self.data) - flow.cursor.position  # type: ignore[arg-type]
        size, budget = sizer.serial_task(self.costs, flow.cursor.handed_out, rest)
        if self.options.streaming:
            size = min(size, STREAMING_SERIAL_CHUNK)
        taken = flow.cursor.take(size, as_list=False)
        if taken is None:
            return
        start, items = taken
        per_item = self.costs.per_item()
        exact = per_item is None or per_item >= EXACT_BELOW_SECONDS
        report = run_task(self.func, 0, flow.next_chunk_id(), items, budget,
                          sizer.first_step(self.costs, budget), portable=False, exact=exact,
                          pace=sizer.pace(self.costs),
                          pace_floor=self.reviser.serial_pace_floor(flow, total))
        report.start_index = start
        report.executor_kind = "serial"
        publisher.chunk(report)
        self.costs.add(report, "serial")
        flow.accept(report, items)

    def _submit(self, lane: Lane, flow: TaskFlow, sizer: policy.TaskSizer,
                total: Optional[int], publisher: RunPublisher) -> None:
        """Hand out tasks until the lane has two per worker in flight. Items a worker
        handed back go out even when finished results fill the window: those results
        wait for exactly these items."""
        assert lane.pool is not None
        exact = True
        while (not flow.cursor.empty and flow.in_flight_on(lane.pool) < 2 * lane.workers
               and (flow.has_room or flow.cursor.given_back)):
            size = sizer.next_size(self.costs, flow.cursor.handed_out)
            budget = sizer.budget_for(size, self.costs)
            if not flow.submit(lane.pool, lane.task_function, size, budget,
                               sizer.first_step(self.costs, budget), exact,
                               sizer.pace(self.costs), sizer.pool_pace_floor(self.costs)):
                break
        if flow.cursor.exhausted:
            self.reviser.note_input_handed_out(lane, flow, total, publisher)

    def _note_start(self, report: ChunkReport, lane: Lane) -> None:
        """The first report of a new process pool tells what starting a worker took."""
        pool = lane.pool
        if lane.first_report_seen or pool is None or pool.kind != "process" or lane.warm:
            return
        lane.first_report_seen = True
        if pool.start_method is not None and pool.owned:
            system.note_process_start(pool.start_method,
                                      report.worker_started_at - pool.created_wall)

    def _close_drained(self, flow: TaskFlow, current: Lane) -> None:
        for lane in self.lanes:
            if lane is not current and lane.ended is None and lane.pool is not None and \
                    flow.in_flight_on(lane.pool) == 0:
                close_lane(lane, True, self.options.keep_workers)

    def _review(self, lane: Lane, flow: TaskFlow, total: Optional[int],
                publisher: RunPublisher) -> Optional[Lane]:
        """Move the remaining items to a better executor if the reports say so."""
        found = self.reviser.better_executor(lane, flow, total, publisher)
        if found is None:
            return None
        plan, reason = found
        if lane.kind == "serial":
            close_lane(lane, True, False)
        new = self._open(plan.executor_type, plan.n_jobs)
        self.reviser.publish(plan, new, flow, total, publisher, reason)
        return new
