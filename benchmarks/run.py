"""Run the whole benchmark suite and write docs/benchmarks.md.

    python -m benchmarks.run            # full run (about 14 minutes on 2 cores)
    python -m benchmarks.run --quick    # smaller inputs, one repeat: a smoke run

Every measurement runs in a fresh child process (benchmarks/child.py), so each method
starts cold: amorsize's first call measures the machine's costs from scratch, Pool,
joblib and mpire start their workers. Methods are interleaved (the order rotates each
repeat) and the medians are reported as ratios to "the limit": the configuration a
grid search over executor (process, thread), n_jobs (1 to 4x cores) and chunksize
(powers of 4 and the even split), serial included, finds fastest (its best few
re-measured every repeat; the lowest median wins).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import hooks_overhead
from benchmarks.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
COMPETITORS = ("serial", "pool", "joblib", "mpire", "amorsize")
LABELS = {
    "serial": "serial",
    "pool": "Pool.map",
    "joblib": "joblib",
    "mpire": "mpire",
    "first": "amorsize 1st",
    "repeat": "amorsize again",
}
TOP_CONFIGS = 3


def child(spec: dict[str, Any], timeout: float) -> Optional[dict[str, Any]]:
    """Run one measurement in a fresh process; None if it ran past `timeout`."""
    command = [sys.executable, "-m", "benchmarks.child", json.dumps(spec)]
    # Its own process group, so that a child past its time is stopped with its workers.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    if process.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{stderr}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python and load: what the numbers were measured on."""
    from amorsize import system

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": model,
        "usable_cores": system.usable_cores(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "start_method": system.start_method(),
        "load_average": os.getloadavg(),
    }


class WorkloadRun:
    """Everything measured for one workload across repeats."""

    def __init__(self, name: str, quick: bool) -> None:
        self.name = name
        self.quick = quick
        self.times: dict[str, list[float]] = {k: [] for k in LABELS}
        self.timed_out: dict[str, float] = {}
        # Each candidate configuration's time in every repeat (None: cut off).
        self.config_times: dict[str, list[Optional[float]]] = {}
        self.grid: list[tuple[list[Any], float]] = []
        self.decisions: list[dict[str, Any]] = []

    def spec(self, method: str, **extra: Any) -> dict[str, Any]:
        """The JSON spec of one measurement of this workload."""
        return {"method": method, "workload": self.name, "quick": self.quick, **extra}

    def median(self, key: str) -> Optional[float]:
        """Median seconds of a method, None if never measured."""
        values = self.times[key]
        return statistics.median(values) if values else None

    @property
    def limit(self) -> float:
        """Median over repeats of the limit configuration's time."""
        return statistics.median(self.limits())

    @property
    def limit_config(self) -> list[Any]:
        """The re-measured candidate configuration with the lowest median time."""
        def median_time(key: str) -> float:
            times = [t for t in self.config_times[key] if t is not None]
            return statistics.median(times) if times else math.inf
        return list(json.loads(min(self.config_times, key=median_time)))

    def limits(self) -> list[float]:
        """The limit configuration's time in each repeat. One configuration for all
        repeats, measured once per repeat like every method: taking the fastest of
        several configurations in each repeat would favour the luckiest run."""
        times = self.config_times[json.dumps(self.limit_config)]
        return [t if t is not None else math.inf for t in times]

    def ratio(self, key: str) -> Optional[float]:
        """Median over repeats of the method's time / the limit of the same repeat
        (measured side by side, so slow phases of the shared machine cancel out)."""
        values, limits = self.times[key], self.limits()
        if not values:
            return None
        if len(values) != len(limits):  # measured once (then capped): use the medians
            return statistics.median(values) / self.limit
        return statistics.median(v / lim for v, lim in zip(values, limits, strict=True))


def method_cap(run: WorkloadRun) -> float:
    """Time limit for one competitor measurement: far beyond any reasonable result."""
    base = run.median("serial") or 1.0
    return max(8.0, 12 * base)


def measure_repeat(run: WorkloadRun, repeat: int) -> None:
    """One interleaved round: every method once, order rotated by `repeat`."""
    methods = list(COMPETITORS) + ["limit"]
    shift = repeat % len(methods)
    for method in methods[shift:] + methods[:shift]:
        if method in run.timed_out:
            continue
        if method == "limit":
            # Each configuration in its own fresh process, like every other method: a
            # process that already ran one has a warm heap (large results reuse its
            # memory) and warm caches.
            configs = [["serial", 1, 0]]
            configs += [c for c, _ in run.grid[:TOP_CONFIGS] if c != ["serial", 1, 0]]
            cutoff = 3 * run.grid[0][1] + 1
            for config in configs:
                out = child(run.spec("configs", configs=[config], cutoff=cutoff), cutoff + 30)
                time_taken = out["times"][0] if out is not None else None
                run.config_times.setdefault(json.dumps(config), []).append(time_taken)
            continue
        cap = method_cap(run)
        out = child(run.spec(method), cap + 20)
        if out is None:
            run.timed_out[method] = cap
            continue
        if method == "amorsize":
            for label in ("first", "repeat"):
                run.times[label].append(out[label]["seconds"])
            run.decisions.append(out)
        else:
            if out["seconds"] > cap and method != "serial":
                run.timed_out[method] = cap
            run.times[method].append(out["seconds"])


def ratio_cell(run: WorkloadRun, key: str) -> str:
    """A method's median as a ratio to the limit."""
    if key in run.timed_out and not run.times[key]:
        return f"> {run.timed_out[key] / run.limit:.0f}x"
    ratio = run.ratio(key)
    if ratio is None:
        return "n/a"
    mark = " (1 run)" if len(run.times[key]) == 1 and len(run.limits()) > 1 else ""
    return f"{ratio:.2f}{mark}"


def describe(config: list[Any]) -> str:
    """A grid configuration as text."""
    kind, n_jobs, chunksize = config
    return "serial" if kind == "serial" else f"{kind} n={n_jobs} c={chunksize}"


def _paired(values: list[float], baseline: list[float]) -> float:
    """Median of values[i] / baseline[i] over the repeats both were measured in."""
    pairs = [v / b for v, b in zip(values, baseline, strict=False) if b > 0]
    return statistics.median(pairs) if pairs else math.nan


def summary(run: WorkloadRun) -> dict[str, Any]:
    """Target figures for one workload."""
    first = run.median("first")
    decisions = [d["first"] for d in run.decisions]
    estimated = statistics.median(d["estimated_speedup"] for d in decisions)
    achieved = 1 / _paired(run.times["first"], run.times["serial"])
    opt_share = statistics.median(d["optimization_seconds"] / d["seconds"] for d in decisions)
    overhead_share = statistics.median(
        max(0.0, d["optimization_seconds"] - d.get("sampled_compute_seconds", 0.0)) / d["seconds"]
        for d in decisions
    )
    last = decisions[-1]
    # Against each rival, the median of side-by-side ratios (as for the limit); the
    # worst of the three is the one that counts.
    vs_rivals = []
    for rival in ("pool", "joblib", "mpire"):
        if run.times[rival]:
            vs_rivals.append(_paired(run.times["first"], run.times[rival]))
        elif rival in run.timed_out and first:
            vs_rivals.append(first / run.timed_out[rival])
    vs_rival = max(vs_rivals) if vs_rivals else math.nan
    return {
        "ratio": run.ratio("first") or math.nan,
        "repeat_ratio": run.ratio("repeat") or math.nan,
        "estimated": estimated,
        "achieved": achieved,
        "speedup_error": abs(estimated / achieved - 1) if achieved else math.nan,
        "opt_share": opt_share,
        "overhead_share": overhead_share,
        "deciding_share": statistics.median(
            max(0.0, d["optimization_seconds"] - d.get("sampled_compute_seconds", 0.0)
                - d.get("worker_start_kept_seconds", 0.0)) / d["seconds"]
            for d in decisions
        ),
        "serial_is_limit": run.limit_config[0] == "serial",
        "over_serial": _paired(run.times["first"], run.times["serial"]) - 1,
        "beats_rivals": vs_rival <= 1.0,
        "vs_rival": vs_rival,
        "decision": describe([last["executor_type"], last["n_jobs"], last["chunksize"]]),
    }


def render(runs: list[WorkloadRun], info: dict[str, Any], memory: Optional[dict[str, Any]],
           hooks: Optional[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    """The docs/benchmarks.md page."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.run"
        + (" --quick" if args.quick else "") + "`; do not edit by hand.",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}, {info['usable_cores']} usable cores "
        f"({info['logical_cpus']} logical CPUs), {info['platform']}",
        f"- Python {info['python']}, start method {info['start_method']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in info['load_average'])} "
        "(the machine is shared; numbers are medians of interleaved runs)",
        f"- repeats: {args.repeats}, whole run: {seconds / 60:.1f} min"
        + (", quick (small inputs)" if args.quick else ""),
        "",
        "## Wall time as a ratio to the limit (median of side-by-side ratios; lower is better)",
        "",
        "The limit is the best configuration of a grid search over executor (process, "
        "thread), n_jobs (1 to 4x cores), chunksize (powers of 4 and the even split) and "
        f"serial: its {TOP_CONFIGS} best configurations and serial are re-measured in "
        "every repeat, each in a fresh process, and the one with the lowest median is "
        "the limit (one configuration throughout: the fastest of several in each repeat "
        "would favour the luckiest run). Every method runs in a fresh process; amorsize "
        "1st is its first call there (machine costs measured cold, default settings), "
        "amorsize again a later call in the same process with keep_workers=True, after "
        "one that kept its workers warm. Each ratio is taken within one repeat (method "
        "and limit measured minutes apart at most), then the median over repeats is shown. "
        "Speedups: estimated is what optimize() predicted (end to end), achieved is "
        "the median over repeats of serial / amorsize 1st measured side by side.",
        "",
        "| workload | serial (s) | limit (s) | limit config | serial | Pool.map | joblib "
        "| mpire | amorsize 1st | amorsize again | amorsize decision | est. speedup "
        "| achieved speedup | optimization share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sums = {run.name: summary(run) for run in runs}
    for run in runs:
        s = sums[run.name]
        lines.append(
            f"| {run.name} | {run.median('serial') or math.nan:.3f} | {run.limit:.3f} "
            f"| {describe(run.limit_config)} | "
            + " | ".join(ratio_cell(run, k) for k in LABELS)
            + f" | {s['decision']} | {s['estimated']:.2f} | {s['achieved']:.2f} "
            f"| {100 * s['opt_share']:.1f}% |"
        )
    spreads = ", ".join(
        f"{run.name} {max(run.times['serial']) / min(run.times['serial']):.2f}x"
        for run in runs if run.times["serial"])
    lines += ["", "How noisy the machine was: the slowest / the fastest of the serial runs "
              f"of each workload over the repeats: {spreads}."]
    lines += ["", "Workloads:", ""]
    lines += [f"- {run.name}: {WORKLOADS[run.name].description}"
              + (" (quick size)" if args.quick else "") for run in runs]
    lines += ["", "## Targets", ""]
    lines += targets(runs, sums, memory)
    if memory is not None:
        lines += [
            "",
            "## Memory: a generator of cheap items through execute_iter()",
            "",
            f"{memory['items']:,} items of `x * 2` from a generator, results consumed and "
            f"dropped: peak RSS of the calling process {memory['peak_rss_mb']:.0f} MB "
            f"(after imports {memory['rss_before_mb']:.0f} MB), {memory['seconds']:.1f} s.",
        ]
    if hooks is not None:
        lines += ["", hooks_overhead.render(hooks)]
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def targets(runs: list[WorkloadRun], sums: dict[str, dict[str, Any]],
            memory: Optional[dict[str, Any]]) -> list[str]:
    """One line per target of issue 3, met or missed and by how much."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    out = []
    ratios = {name: s["ratio"] for name, s in sums.items()}
    worst = max(ratios, key=lambda k: ratios[k])
    geo = math.exp(statistics.fmean(math.log(r) for r in ratios.values()))
    out.append(f"- amorsize 1st <= 1.10x the limit on every workload: "
               f"{verdict(ratios[worst] <= 1.10)} (worst {worst} {ratios[worst]:.2f}x)")
    out.append(f"- geometric mean <= 1.05x: {verdict(geo <= 1.05)} ({geo:.3f}x)")
    losers = [name for name, s in sums.items() if not s["beats_rivals"]]
    margins = ", ".join(f"{n} {s['vs_rival']:.2f}x" for n, s in sums.items())
    out.append("- faster than or equal to Pool.map, joblib and mpire defaults: "
               f"{verdict(not losers)} (amorsize 1st / the fastest rival, median of "
               f"side-by-side ratios: {margins})")
    serial_rows = [(n, s) for n, s in sums.items() if s["serial_is_limit"]]
    if serial_rows:
        parts = ", ".join(f"{n} {100 * s['over_serial']:+.1f}%" for n, s in serial_rows)
        ok = all(s["over_serial"] <= 0.10 and s["decision"] == "serial" for _, s in serial_rows)
        out.append(f"- where serial is the limit, amorsize runs serially within 10% of "
                   f"serial: {verdict(ok)} ({parts})")
    errors = {n: s["speedup_error"] for n, s in sums.items()}
    bad = [f"{n} {100 * e:.0f}%" for n, e in errors.items() if not e <= 0.25]
    out.append("- predicted speedup within 25% of achieved: "
               f"{verdict(not bad)}" + (f" (off on {', '.join(bad)})" if bad else ""))
    shares = {n: s["opt_share"] for n, s in sums.items()}
    heavy = max(shares, key=lambda k: shares[k])
    out.append(f"- optimization <= 5% of wall time: {verdict(shares[heavy] <= 0.05)} "
               f"(largest {heavy} {100 * shares[heavy]:.1f}%; "
               + ", ".join(f"{n} {100 * v:.1f}%" for n, v in shares.items()) + ")")
    extra = {n: s["overhead_share"] for n, s in sums.items()}
    out.append("  - the same without the sampled items' own compute (their results are kept): "
               + ", ".join(f"{n} {100 * v:.1f}%" for n, v in extra.items()))
    deciding = {n: s["deciding_share"] for n, s in sums.items()}
    out.append("  - and without starting the worker processes the run then used (every pool "
               "pays that; amorsize starts them while it samples): "
               + ", ".join(f"{n} {100 * v:.1f}%" for n, v in deciding.items()))
    again = {n: s["repeat_ratio"] for n, s in sums.items()}
    out.append("- repeated call (machine costs cached, warm workers with keep_workers=True): "
               + ", ".join(f"{n} {r:.2f}x" for n, r in again.items()))
    if memory is not None:
        out.append(f"- 10M-item generator under 200 MB peak RSS: "
                   f"{verdict(memory['peak_rss_mb'] < 200)} ({memory['peak_rss_mb']:.0f} MB)")
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """Parse options, measure everything, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (9)")
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-hooks", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 9
    started = time.perf_counter()
    info = machine()
    names = [n for n in args.only.split(",") if n] or list(WORKLOADS)
    cores = info["usable_cores"]
    n_values = [1, cores, 2 * cores, 4 * cores] if args.quick else list(range(1, 4 * cores + 1))
    runs = [WorkloadRun(name, args.quick) for name in names]
    for run in runs:
        out = child(run.spec("grid", n_values=sorted(set(n_values))), 900)
        if out is None:
            raise RuntimeError(f"grid search of {run.name} timed out")
        run.grid = [(list(c), t) for c, t in out["found"]]
        top = ", ".join(f"{describe(c)} {t:.3f}s" for c, t in run.grid[:TOP_CONFIGS])
        print(f"[grid] {run.name}: {top}", flush=True)
    for repeat in range(args.repeats):
        for run in runs:
            measure_repeat(run, repeat)
            print(f"[repeat {repeat + 1}] {run.name}: "
                  + ", ".join(f"{k} {v[-1]:.3f}" for k, v in run.times.items() if v)
                  + ", configs " + ", ".join(
                      f"{describe(json.loads(k))} {v[-1]:.3f}" if v[-1] is not None
                      else f"{describe(json.loads(k))} cut off"
                      for k, v in run.config_times.items()), flush=True)
    memory = None
    if not args.skip_memory:
        items = 2_000_000 if args.quick else 10_000_000
        memory = child({"method": "memory", "items": items}, 600)
    hooks = None
    if not args.skip_hooks:
        hooks = hooks_overhead.measure(quick=args.quick)
    page = render(runs, info, memory, hooks, args, time.perf_counter() - started)
    print(page)
    if not args.no_write:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(page)
        raw = {"machine": info, "memory": memory, "hooks": hooks,
               "workloads": {run.name: vars(run) for run in runs}}
        Path(args.output).with_suffix(".json").write_text(
            json.dumps(raw, indent=1, default=str) + "\n")
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
