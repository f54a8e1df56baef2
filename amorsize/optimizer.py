"""Decide how a job starts: serial, threads or processes, how many workers, task size.

`optimize(func, data)` dry-runs the function on a few items in the calling process
(see `sampling`) and asks the cost model (`costmodel`) for the fastest plan. The same
decision starts an automatic execute(), which then keeps revising it from what the
workers measure (`policy`); `OptimizationResult.revisions` lists how.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from amorsize import arguments, costmodel, system
from amorsize.measure import run_delay_known
from amorsize.sampling import Sample, take_sample

# Assumed job size when the input has no len() and no total_items hint was given.
ASSUMED_UNKNOWN_TOTAL = 10_000


def _figure(label: str) -> Any:
    return field(default=None, metadata={"label": label})


@dataclass
class Figures:
    """The measured figures behind a decision (None: not measured for this one)."""

    sampled_items: Optional[int] = _figure("sampled items")
    mean_item_seconds: Optional[float] = _figure("mean item time (s)")
    item_time_cv: Optional[float] = _figure("item time spread (cv)")
    cpu_share: Optional[float] = _figure("cpu time / time it could run")
    input_bytes_per_item: Optional[float] = _figure("pickled input (bytes/item)")
    result_bytes_per_item: Optional[float] = _figure("pickled result (bytes/item)")
    parent_ipc_seconds_per_item: Optional[float] = _figure("pickling in the caller (s/item)")
    peak_memory_bytes: Optional[int] = _figure("peak memory of one call (bytes)")
    sampled_compute_seconds: Optional[float] = _figure("sampled compute (s)")
    run_delay_measured: Optional[bool] = _figure("run-queue wait measured")
    usable_cores: Optional[int] = _figure("usable cores")
    available_memory_bytes: Optional[int] = _figure("available memory (bytes)")
    start_method: Optional[str] = _figure("start method")
    process_start_seconds: Optional[float] = _figure("worker process start (s)")
    gil: Optional[bool] = _figure("threads share one GIL")

    def rows(self) -> list[tuple[str, Any]]:
        """(label, value) of every figure that has a value, for display."""
        return [(f.metadata["label"], getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None]

    def values(self) -> dict[str, Any]:
        """{field name: value} of every figure that has a value."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class PlanRevision:
    """A change of plan while the run ran, and why."""

    elapsed_seconds: float
    executor_type: str
    n_jobs: int
    chunksize: int
    estimated_speedup: Optional[float]
    reason: str


@dataclass
class OptimizationResult:
    """How a job is (or was) run, and the measured figures behind the decision.

    `estimated_speedup` is the one estimate everywhere: the whole job serially against
    the whole execute() as planned, deciding included (see costmodel.speedup). After
    an execute(), `revisions` lists the plan changes, `final_estimated_speedup` the
    last estimate made while the input was still being handed out, `actual_speedup`
    what the run achieved.
    """

    n_jobs: int
    chunksize: int
    executor_type: str
    estimated_speedup: float
    reason: str
    warnings: list[str] = field(default_factory=list)
    data: Optional[Iterable[Any]] = None
    total_items: Optional[int] = None
    predicted_seconds: Optional[float] = None
    serial_seconds_estimate: Optional[float] = None
    figures: Figures = field(default_factory=Figures)
    optimization_seconds: float = 0.0
    use_cloudpickle: bool = False
    revisions: list[PlanRevision] = field(default_factory=list)
    final_estimated_speedup: Optional[float] = None
    actual_speedup: Optional[float] = None

    def explain(self) -> str:
        """The decision, the figures behind it and what the run changed, one per line."""
        lines = [
            f"decision: {self.executor_type}, n_jobs={self.n_jobs}, chunksize={self.chunksize}",
            f"reason: {self.reason}",
            f"estimated speedup: {_x(self.estimated_speedup)}",
        ]
        if self.serial_seconds_estimate is not None:
            lines.append(f"serial time estimate: {self.serial_seconds_estimate:.4f} s")
        if self.predicted_seconds is not None:
            lines.append(f"predicted time: {self.predicted_seconds:.4f} s")
        lines.append(f"optimization time: {self.optimization_seconds:.4f} s")
        for label, value in self.figures.rows():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(f"{label}: {shown}")
        for revision in self.revisions:
            lines.append(
                f"revised at {revision.elapsed_seconds:.3f} s: {revision.executor_type}, "
                f"n_jobs={revision.n_jobs}, chunksize={revision.chunksize} "
                f"(estimate {_x(revision.estimated_speedup)}): {revision.reason}")
        if self.final_estimated_speedup is not None:
            lines.append(f"final estimated speedup: {_x(self.final_estimated_speedup)}")
        if self.actual_speedup is not None:
            lines.append(f"actual speedup: {_x(self.actual_speedup)}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


def _x(value: Optional[float]) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}x"


def machine_figures(figures: Figures, machine: costmodel.MachineCosts, method: str) -> None:
    """Fill in what the machine offers."""
    figures.usable_cores = machine.cores
    figures.available_memory_bytes = machine.available_memory
    figures.start_method = method
    figures.process_start_seconds = machine.process_start
    figures.gil = machine.gil
    figures.run_delay_measured = run_delay_known()


def sample_figures(sample: Sample, w: costmodel.Workload) -> Figures:
    """The figures a dry run measured."""
    measured = sample.measurements
    return Figures(
        sampled_items=len(measured),
        mean_item_seconds=w.item_seconds,
        item_time_cv=w.item_cv,
        cpu_share=w.cpu_share,
        input_bytes_per_item=_mean([m.input_bytes for m in measured]),
        result_bytes_per_item=_mean([m.result_bytes for m in measured]),
        parent_ipc_seconds_per_item=w.parent_ipc_seconds,
        peak_memory_bytes=sample.peak_memory_bytes,
        sampled_compute_seconds=sample.compute_seconds,
    )


def _mean(values: Sequence[Optional[int]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def allowed_executors(sample: Sample, executor_type: Optional[str], n_jobs: Optional[int],
                      warnings: list[str]) -> tuple[list[str], bool]:
    """The executors the decision may choose, and whether the function must travel by
    value (cloudpickle) to reach worker processes."""
    allowed = [executor_type] if executor_type else list(costmodel.EXECUTOR_TYPES)
    if n_jobs is not None and executor_type is None:
        allowed = ["serial"] if n_jobs == 1 else ["thread", "process"]
    by_value = False
    if "process" in allowed:
        blocker = None
        if not sample.items_picklable:
            blocker = "input items"
        elif not sample.results_picklable:
            blocker = "results"
        if blocker is not None:
            if executor_type == "process":
                raise TypeError(f"executor_type='process' needs picklable {blocker}; make "
                                "them picklable or use executor_type='thread'")
            allowed.remove("process")
            warnings.append(f"the {blocker} cannot be pickled, so worker processes are not "
                            "an option; threads or serial are considered instead")
        elif not sample.function_picklable:
            by_value = True
            warnings.append("the function cannot be pickled by reference (lambda, closure "
                            "or local function); it is sent to worker processes with "
                            "cloudpickle")
    return allowed, by_value


def decide(sample: Sample, *, target_chunk_duration: float = 0.2, n_jobs: Optional[int] = None,
           executor_type: Optional[str] = None, total_items: Optional[int] = None,
           min_speedup: float = 1.1, spent_seconds: float = 0.0,
           machine: Optional[costmodel.MachineCosts] = None,
           start_method: Optional[str] = None) -> OptimizationResult:
    """Turn a dry run into a decision. Fixed n_jobs / executor_type are kept.

    `spent_seconds` (deciding so far, the sampled items included) counts in the
    estimated speedup and in the min_speedup test, as it counts in the run.
    """
    warnings: list[str] = []
    total = total_items if total_items is not None else sample.total_items
    if total is None:
        assumed = ASSUMED_UNKNOWN_TOTAL
        warnings.append(f"the input has no len(); the decision assumes {assumed} items "
                        "(pass total_items= for a better one); the run revises it")
    else:
        assumed = total
    done = len(sample.results)
    rest = sample.workload(max(assumed - done, 1))
    method = start_method or system.start_method()
    machine = machine or system.machine_costs(method)
    figures = sample_figures(sample, rest)
    machine_figures(figures, machine, method)
    allowed, by_value = allowed_executors(sample, executor_type, n_jobs, warnings)
    job_serial = sample.compute_seconds + (assumed - done) * rest.item_seconds if (
        assumed > done) else sample.compute_seconds
    if sample.error is not None:
        plan = costmodel.Plan("serial", 1, 1, 0.0)
        reason = "The function raised on a sampled item, so the job stops there."
    elif assumed <= done:
        plan = costmodel.Plan("serial", 1, max(1, done), 0.0)
        reason = "The dry run computed every item."
    else:
        plan = costmodel.best_plan(rest, machine, allowed, n_jobs if n_jobs != 1 else None,
                                   target_chunk_duration, min_speedup, spent_seconds)
        reason = plan_reason(plan, rest, machine, allowed, spent_seconds, job_serial,
                             min_speedup, fixed=executor_type is not None or n_jobs is not None,
                             target_chunk_duration=target_chunk_duration)
    estimated = costmodel.speedup(job_serial, spent_seconds, plan.seconds)
    return OptimizationResult(
        n_jobs=plan.n_jobs, chunksize=plan.chunksize, executor_type=plan.executor_type,
        estimated_speedup=estimated, reason=reason, warnings=warnings, total_items=total,
        predicted_seconds=spent_seconds + plan.seconds, serial_seconds_estimate=job_serial,
        figures=figures, use_cloudpickle=by_value and plan.executor_type == "process",
    )


def plan_reason(plan: costmodel.Plan, w: costmodel.Workload,
                machine: costmodel.MachineCosts, allowed: Sequence[str], spent: float,
                job_serial: float, min_speedup: float, fixed: bool,
                target_chunk_duration: float) -> str:
    """Why this plan, in the same figures as the estimated speedup."""
    total = spent + plan.seconds
    estimate = costmodel.speedup(job_serial, spent, plan.seconds)
    if plan.executor_type == "serial":
        pools = [p for p in costmodel.candidates(w, machine, allowed, None,
                                                 target_chunk_duration)
                 if p.executor_type != "serial"]
        if not pools:
            return "Serial is the only option left for this job."
        best = min(pools, key=lambda p: p.seconds)
        kind = "threads" if best.executor_type == "thread" else "worker processes"
        best_estimate = costmodel.speedup(job_serial, spent, best.seconds)
        return (f"Serial: the whole job is predicted at {total:.4f} s in this process; the "
                f"best pool ({best.n_jobs} {kind}) at {spent + best.seconds:.4f} s, "
                f"{best_estimate:.2f}x, below the {min_speedup:.2f}x needed.")
    kind = "threads" if plan.executor_type == "thread" else "worker processes"
    why = ""
    if plan.executor_type == "thread":
        why = f" (the function waits {100 * (1 - w.cpu_share):.0f}% of its time)"
    source = "the settings you fixed" if fixed else "the fastest predicted option"
    return (f"{plan.n_jobs} {kind}, starting with {plan.chunksize} items per task, is "
            f"{source}{why}: {total:.4f} s predicted for the whole job against "
            f"{job_serial:.4f} s serially ({estimate:.2f}x, deciding included).")


def optimize(func: Callable[[Any], Any], data: Iterable[Any], *, sample_size: int = 5,
             target_chunk_duration: float = 0.2, n_jobs: Optional[int] = None,
             chunksize: Optional[int] = None, executor_type: Optional[str] = None,
             total_items: Optional[int] = None, min_speedup: float = 1.1,
             verbose: bool = False) -> OptimizationResult:
    """Dry-run `func` on a few items of `data` and decide how to run the whole job.

    Respects CPU affinity, the cgroup CPU quota and memory limit. The returned
    `data` attribute holds every item (sampled ones chained back for one-shot
    iterables); pass it on instead of the original iterator. Raises the function's
    own exception if it fails on a sampled item. `verbose=True` prints the decision.
    """
    arguments.check_common(func, data, sample_size=sample_size,
                           target_chunk_duration=target_chunk_duration, n_jobs=n_jobs,
                           chunksize=chunksize, executor_type=executor_type,
                           total_items=total_items, min_speedup=min_speedup,
                           verbose=verbose)
    started = time.perf_counter()
    sample = take_sample(func, data, sample_size)
    if sample.error is not None:
        raise sample.error
    result = decide(sample, target_chunk_duration=target_chunk_duration, n_jobs=n_jobs,
                    executor_type=executor_type, total_items=total_items,
                    min_speedup=min_speedup,
                    spent_seconds=time.perf_counter() - started)
    if chunksize is not None:
        result.chunksize = chunksize
    result.optimization_seconds = time.perf_counter() - started
    reiterable = isinstance(data, Sequence) or (
        sample.total_items is not None and iter(data) is not data)
    result.data = data if reiterable else sample.remaining_data()
    if verbose:
        print(result.explain())
    return result
