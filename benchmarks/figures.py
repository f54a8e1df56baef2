"""The figures the targets are judged on, computed from what the children measured.

Pure: no measuring here, so the page can be rebuilt from a benchmarks.json.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any, Optional

from benchmarks.scenario import RIVALS, WorkloadRun, describe

# execute()'s default target_chunk_duration, which the runs use.
TARGET_CHUNK_SECONDS = 0.2
# "After the first second of a run".
SETTLING_SECONDS = 1.0
POOL_KINDS = ("thread", "process", "external")


def _median(values: list[Optional[float]]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def median_interval(values: list[float], confidence: float = 0.90) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of what `values` sample
    (order statistics: the median lies between the k-th smallest and the k-th largest
    of n values with probability 1 - 2 P(Binomial(n, 1/2) < k)). With 15 repeats at
    90 %, the 4th and the 12th. NaNs where fewer than 2 values."""
    ordered = sorted(v for v in values if not math.isnan(v))
    n = len(ordered)
    if n < 2:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    k, below = 0, 0.0  # below: P(B <= k - 1)
    while True:
        below_next = below + math.comb(n, k) / 2 ** n  # P(B <= k)
        if below_next > tail:
            break
        k, below = k + 1, below_next
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]


def _error(estimate: Optional[float], achieved: Optional[float]) -> float:
    """|estimate / achieved - 1|, NaN where either is unknown."""
    if estimate is None or achieved is None or not achieved or math.isnan(estimate):
        return math.nan
    return abs(estimate / achieved - 1)


def chunk_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every task of the recorded runs: start (s into the run), seconds, where it ran."""
    rows = []
    for run_events in events:
        for start, seconds, items, worker, sampled, kind in run_events.get("chunks", []):
            rows.append({"start": start, "seconds": seconds, "items": items,
                         "worker": worker, "sampled": sampled, "kind": kind})
    return rows


def task_figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The longest tasks: after the first second, and over the whole run, for pool
    tasks and for tasks in the calling process (serial) apart."""
    rows = chunk_rows(events)
    late = [r for r in rows if r["start"] is not None and r["start"] >= SETTLING_SECONDS]
    limit = 2 * TARGET_CHUNK_SECONDS

    def longest(subset: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
        return max(subset, key=lambda r: r["seconds"]) if subset else None

    return {
        "tasks": len(rows),
        "late_tasks": len(late),
        "late_over": sum(1 for r in late if r["seconds"] > limit),
        "longest_late": longest(late),
        "longest_pool": longest([r for r in rows if r["kind"] in POOL_KINDS]),
        "longest_here": longest([r for r in rows if r["kind"] not in POOL_KINDS]),
    }


def rival_ratios(run: WorkloadRun) -> dict[str, float]:
    """amorsize 1st / each rival, median of side-by-side ratios (a rival cut off at its
    time cap counts as taking the cap)."""
    first = run.median("first")
    ratios: dict[str, float] = {}
    for rival in RIVALS:
        if run.times[rival]:
            ratios[rival] = run.paired("first", rival)
        elif rival in run.timed_out and first:
            ratios[rival] = first / run.timed_out[rival]
    return ratios


def no_pool_wins(run: WorkloadRun) -> bool:
    """Serial is the limit, and the best pool configuration re-measured is 1.10x slower."""
    medians = {}
    for key, times in run.config_times.items():
        present = [t for t in times if t is not None]
        medians[key] = statistics.median(present) if present else math.inf
    serial = medians.pop(json.dumps(["serial", 1, 0]), None)
    if serial is None or run.limit_config[0] != "serial":
        return False
    return min(medians.values(), default=math.inf) >= 1.10 * serial


def summary(run: WorkloadRun) -> dict[str, Any]:
    """Target figures for one workload in one setting."""
    decisions = [d["first"] for d in run.decisions]
    events = [d["events"] for d in decisions if "events" in d]
    outcomes = [e["outcome"] for e in events]
    finals = [o.get("final_estimated_speedup") for o in outcomes]
    actuals = [o.get("actual_speedup") for o in outcomes]
    vs_rivals = rival_ratios(run)
    achieved = 1 / run.paired("first", "serial") if run.times["serial"] else math.nan
    serial_ratio = run.ratio("serial") or math.nan
    last = events[-1] if events else {}
    opt = [d["optimization_seconds"] / d["seconds"] for d in decisions]
    with_sample = [(d["optimization_seconds"] + d.get("sampled_compute_seconds", 0.0))
                   / d["seconds"] for d in decisions]
    kinds = [set(e.get("executor_types", [])) for e in events]
    rival_intervals = {rival: median_interval(run.paired_values("first", rival))
                       for rival in vs_rivals}
    return {
        "ratio": run.ratio("first") or math.nan,
        "ratio_interval": median_interval(run.ratio_values("first")),
        "rival_intervals": rival_intervals,
        "over_serial_interval": tuple(
            x - 1 for x in median_interval(run.paired_values("first", "serial"))),
        "repeat_ratio": run.ratio("repeat") or math.nan,
        "serial_ratio": serial_ratio,
        "serial_is_limit": run.limit_config[0] == "serial",
        "no_pool_wins": no_pool_wins(run),
        # Parallelism pays where the limit is a pool at least 10 % faster than serial.
        "pays": run.limit_config[0] != "serial" and serial_ratio >= 1.10,
        "over_serial": run.paired("first", "serial") - 1,
        "vs_rivals": vs_rivals,
        "vs_rival": max(vs_rivals.values()) if vs_rivals else math.nan,
        "first_estimate": _median([e["decision"].get("estimated_speedup") for e in events]),
        "final_estimate": _median(finals),
        "actual": _median(actuals),
        "estimate_error": _median([_error(f, a) for f, a in zip(finals, actuals,
                                                               strict=True)]),
        "achieved": achieved,
        "side_by_side_error": _error(_median(finals), achieved),
        "opt_share": _median(opt),
        "opt_share_with_sample": _median(with_sample),
        "revisions": _median([float(len(e.get("revisions", []))) for e in events]),
        "thread_runs": sum(1 for k in kinds if "thread" in k),
        "runs": len(events),
        "plan": _plan(last),
        "tasks": task_figures(events),
    }


def _plan(events: dict[str, Any]) -> str:
    """'first plan -> last plan' of one recorded run."""
    if not events:
        return "n/a"
    d = events["decision"]
    start = describe([d["executor_type"], d["n_jobs"], d["chunksize"]])
    if not events.get("revisions"):
        return start
    r = events["revisions"][-1]
    return f"{start} -> {describe([r['executor_type'], r['n_jobs'], r['chunksize']])}"


def geometric_mean(values: list[float]) -> float:
    """Geometric mean of positive numbers (inf if one is: a run that never ended); NaN if
    there are none."""
    present = [v for v in values if v > 0 and not math.isnan(v)]
    return math.exp(statistics.fmean(math.log(v) for v in present)) if present else math.nan


def threads_check(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How many runs of the check chose threads, at the start or in a revision."""
    chose = [r for r in runs if r.get("chose_threads")]
    starts: dict[str, int] = {}
    for r in runs:
        kind = r["decision"].get("executor_type", "?")
        starts[kind] = starts.get(kind, 0) + 1
    return {"runs": len(runs), "threads": len(chose), "starts": starts,
            "revised": sum(1 for r in runs if r.get("revisions")),
            "tasks": task_figures(runs)}
