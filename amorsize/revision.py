"""Keeping the published plan in step with what the workers measure.

A run decides how to start from a few items; the reports of its tasks then say more.
`Reviser` turns them into plan changes: the remaining items moved to a better executor
(`policy.review_executor`, automatic mode only), the task size republished when the
item cost moved 2x or more, and the speedup estimate revised. Each change is an
ON_PLAN_CHANGE event and a `PlanRevision`. Opening and closing the executors stays
with the run (run.py); this module only says what to change and why.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Optional

from amorsize import costmodel, policy
from amorsize.arguments import RunOptions
from amorsize.dispatch import TaskFlow
from amorsize.lanes import Lane
from amorsize.optimizer import ASSUMED_UNKNOWN_TOTAL, OptimizationResult, PlanRevision
from amorsize.publisher import RunPublisher


class Reviser:
    """The plan of one run as the measurements revise it."""

    def __init__(self, options: RunOptions, costs: policy.ItemCosts) -> None:
        self.options = options
        self.costs = costs
        self.optimization: Optional[OptimizationResult] = None
        self.machine = costmodel.MachineCosts(1, 0, 0.0, 0.0, 0.0)
        self.started = time.perf_counter()
        self.final_estimate: Optional[float] = None
        self.published_chunksize = 0
        self.tasks_at_publication = 0
        self._serial_floor = policy.SerialPaceFloor(options.target_chunk_duration,
                                                    options.min_speedup)

    def begin(self, optimization: OptimizationResult, machine: costmodel.MachineCosts,
              started: float) -> None:
        """The plan PRE_EXECUTE published, on this machine, for a run started then."""
        self.optimization = optimization
        self.machine = machine
        self.started = started
        self.published_chunksize = optimization.chunksize

    # ------------------------------------------------------------------ figures

    def remaining(self, flow: TaskFlow, total: Optional[int]) -> int:
        """Items not yet measured (an input of unknown length: a guess until it ends)."""
        done = self.costs.items
        if total is not None:
            return max(0, total - done)
        if flow.cursor.exhausted:
            return flow.in_flight_items() + sum(len(i) for _, i in flow.cursor.given_back)
        return max(done, ASSUMED_UNKNOWN_TOTAL - done, 1)

    def estimate(self, lane: Lane, flow: TaskFlow, total: Optional[int]) -> Optional[float]:
        """The whole run's estimated speedup, from what was measured so far."""
        elapsed = time.perf_counter() - self.started
        return policy.revised_estimate(self.costs, elapsed, self.remaining(flow, total),
                                       lane.workers, lane.kind, self.machine,
                                       self.options.target_chunk_duration)

    def serial_pace_floor(self, flow: TaskFlow, total: Optional[int]) -> float:
        """A serial task's pace floor (policy.SerialPaceFloor); 0 unless automatic."""
        if not self.options.automatic:
            return 0.0
        return self._serial_floor.floor(self.costs, self.remaining(flow, total),
                                        self.machine)

    def note_input_handed_out(self, lane: Lane, flow: TaskFlow, total: Optional[int],
                              publisher: RunPublisher) -> None:
        """The last task went out: the estimate made now is the run's final one."""
        if self.final_estimate is None and self.costs.per_item() is not None:
            self.final_estimate = self.estimate(lane, flow, total)
            publisher.revise_estimate(self.final_estimate)

    # ------------------------------------------------------------------ changes

    def better_executor(self, lane: Lane, flow: TaskFlow, total: Optional[int],
                        publisher: RunPublisher) -> Optional[tuple[costmodel.Plan, str]]:
        """A plan for the remaining items on another executor, and why; or None. The
        estimate is revised either way."""
        if flow.cursor.empty:
            return None
        o = self.options
        remaining = self.remaining(flow, total) - flow.in_flight_items()
        plan = policy.review_executor(lane.kind, lane.workers, self.costs, remaining,
                                      self.machine, o.target_chunk_duration, o.min_speedup)
        publisher.revise_estimate(self.estimate(lane, flow, total))
        if plan is None:
            return None
        return plan, move_reason(lane.kind, plan, self.costs.cpu_share())

    def follow_task_size(self, lane: Lane, sizer: policy.TaskSizer, flow: TaskFlow,
                         total: Optional[int], publisher: RunPublisher) -> None:
        """A plan change when the task size the measured cost asks for moved 2x or
        more from the one last published (the first tasks, probes, aside)."""
        if sizer.fixed or self.costs.tasks < self.tasks_at_publication + max(4, 2 * lane.workers):
            return  # a few tasks between changes: noise never makes the plan flap
        planned = sizer.planned_size(self.costs)
        published = self.published_chunksize
        if planned is None or (published / 2 < planned < published * 2):
            return
        self.published_chunksize = planned
        self.tasks_at_publication = self.costs.tasks
        near = f"tasks of {planned} items keep them near {sizer.target:g} s"
        reason = (f"the workers measured the items: {near}" if not published else
                  f"the items now cost {_ratio(planned, published)} what was planned: {near}")
        plan = costmodel.Plan(lane.kind, lane.workers, planned, 0.0)
        self.publish(plan, lane, flow, total, publisher, reason)

    def publish(self, plan: costmodel.Plan, lane: Lane, flow: TaskFlow,
                total: Optional[int], publisher: RunPublisher, reason: str) -> None:
        """Record a plan change (now running on `lane`) and publish it."""
        assert self.optimization is not None
        estimate = self.estimate(lane, flow, total)
        revision = PlanRevision(time.perf_counter() - self.started, lane.label,
                                lane.workers, plan.chunksize, estimate, reason)
        self.optimization.revisions.append(revision)
        current = replace(self.optimization, executor_type=lane.label, n_jobs=lane.workers,
                          chunksize=plan.chunksize, estimated_speedup=estimate or math.nan,
                          revisions=list(self.optimization.revisions))
        publisher.plan_change(current, reason)


def _ratio(planned: int, published: int) -> str:
    """How the item cost moved, from the task sizes it asks for."""
    if planned < published:
        return f"{published / planned:.1f}x"
    return f"1/{planned / published:.1f} of"


def move_reason(kind: str, plan: costmodel.Plan, share: Optional[float]) -> str:
    """Why the remaining items moved to another executor."""
    target = f"{plan.n_jobs} {'threads' if plan.executor_type == 'thread' else 'processes'}"
    waits = 100 * (1 - (share or 0.0))
    if kind == "serial":
        why = "the items turned out dear enough for a pool"
        if plan.executor_type == "thread":
            why += f", and the function waits {waits:.0f}% of its time"
        return f"moved to {target}: {why}"
    if plan.executor_type == "thread":
        return (f"moved to {target}: the workers measured a function that waits "
                f"{waits:.0f}% of its time")
    return (f"moved to {target}: the threads saturated the GIL with a function that "
            "computes")
