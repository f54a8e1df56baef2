"""Run the benchmark suite: every workload against serial, Pool.map, joblib, mpire and a
grid-searched limit, on a quiet machine and with one busy loop per core beside it.

    python -m benchmarks.run --quick                      # smoke run, 5-9 min on 2 cores
    python -m benchmarks.run --quick --workloads step     # one workload, about 1 min
    python -m benchmarks.run                              # full run, ~22 min on 2 cores
                                                          # (estimated from its parts)
    python -m benchmarks.run --write-docs                 # full run, updates docs/
    python -m benchmarks.run --thorough --write-docs      # more repeats, finer grids
    python -m benchmarks.run --render build/benchmarks/benchmarks.json   # page only

Output goes to build/benchmarks/benchmarks.md and .json (printed at the end); only a
full run with --write-docs writes docs/benchmarks.md and docs/benchmarks.json.

Every measurement runs in a fresh child process (benchmarks/child.py). Methods are
interleaved (the order rotates each repeat) and reported as medians of ratios to "the
limit", the grid's best configuration measured in the same repeat (benchmarks/scenario.py).
Nothing assumes a core count: the grid (n_jobs 1 to 4x cores), the busy loops (one per
usable core) and the Pool/joblib/mpire defaults all follow the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import imports
from benchmarks.load import BusyLoops
from benchmarks.page import render
from benchmarks.scenario import ROOT, WorkloadRun, child, describe
from benchmarks.workloads import WORKLOADS

DOCS = ROOT / "docs" / "benchmarks.md"
BUILD = ROOT / "build" / "benchmarks" / "benchmarks.md"
THREADS_WORKLOAD = "heavy"
THREADS_TIMEOUT = 120  # seconds; the run takes about one


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


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    """The command line, with the defaults that depend on --quick and --thorough."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small inputs, one repeat, coarse grid: a smoke run")
    parser.add_argument("--thorough", action="store_true",
                        help="more repeats (15 quiet, 9 loaded) and the fine grid under load")
    parser.add_argument("--repeats", type=int, help="interleaved quiet repeats (6)")
    parser.add_argument("--load-repeats", type=int, help="repeats with busy loops (4)")
    parser.add_argument("--workloads", "--only", default="",
                        help="comma-separated workload names (default: all): "
                        + ", ".join(WORKLOADS))
    parser.add_argument("--no-load", action="store_true",
                        help="no busy-loop runs (and no threads check)")
    parser.add_argument("--threads-runs", type=int, help="runs of the threads check (20)")
    parser.add_argument("--threads-workload", default=THREADS_WORKLOAD)
    parser.add_argument("--import-runs", type=int, help="fresh interpreters per import (15)")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-hooks", action="store_true")
    parser.add_argument("--output", help=f"page path (default {BUILD.relative_to(ROOT)}; "
                        "the raw data goes beside it as .json)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write docs/benchmarks.md and .json (full run only)")
    parser.add_argument("--no-write", action="store_true", help="print the page only")
    parser.add_argument("--render", metavar="JSON",
                        help="measure nothing: rebuild the page from a saved .json")
    args = parser.parse_args(argv)
    quick, thorough = args.quick, args.thorough
    if args.repeats is None:
        args.repeats = 1 if quick else 15 if thorough else 6
    if args.load_repeats is None:
        args.load_repeats = 1 if quick else 9 if thorough else 4
    if args.threads_runs is None:
        args.threads_runs = 4 if quick else 20
    if args.import_runs is None:
        args.import_runs = 3 if quick else 15
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    args.names = names or list(WORKLOADS)
    if args.threads_workload not in WORKLOADS:
        parser.error(f"unknown --threads-workload {args.threads_workload}")
    partial = (quick or names or args.no_load or args.skip_imports or args.skip_memory
               or args.skip_hooks or args.repeats < 3)
    if args.write_docs and partial:
        parser.error("--write-docs needs the full run: no --quick, --workloads, --no-load, "
                     "--skip-* or --repeats below 3")
    if args.write_docs and args.output:
        parser.error("--write-docs writes docs/benchmarks.md; leave out --output")
    output = Path(args.output).resolve() if args.output else DOCS if args.write_docs else BUILD
    if not args.write_docs and output.parent == DOCS.parent:
        parser.error("only --write-docs writes into docs/")
    args.output_path = output
    return args


def read_before() -> Optional[dict[str, Any]]:
    """The committed docs/benchmarks.json: the run this one is compared with."""
    path = DOCS.with_suffix(".json")
    try:
        before: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    before["source"] = str(path.relative_to(ROOT))
    return before


def threads_run(args: argparse.Namespace) -> dict[str, Any]:
    """One run of the threads check, in a fresh process."""
    spec = {"method": "decide", "workload": args.threads_workload, "quick": args.quick}
    out = child(spec, THREADS_TIMEOUT)
    if out is None:
        return {"seconds": float(THREADS_TIMEOUT), "decision": {}, "revisions": [], "chunks": [],
                "outcome": {}, "executor_types": [], "chose_threads": False,
                "timed_out": True}
    return out


def side_job(module: str, *flags: str) -> dict[str, Any]:
    """A measurement module run in its own fresh process, printing JSON."""
    done = subprocess.run([sys.executable, "-m", module, "--json", *flags], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_STARTED = time.perf_counter()


def say(line: str) -> None:
    """A progress line on the console, with the minutes since the start."""
    print(f"{(time.perf_counter() - _STARTED) / 60:5.1f}m {line}", flush=True)


def measure(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """Everything, in order: imports, grids, interleaved repeats, threads check, memory
    and hooks."""
    cores = info["usable_cores"]
    fine_n = list(range(1, 4 * cores + 1))
    coarse_n = sorted({1, cores, 2 * cores, 4 * cores})
    # Under load a pool of one worker is never the limit (serial, with no pool, is in
    # the grid): the loaded grid starts at one worker per core.
    loaded_n = fine_n if args.thorough else sorted({cores, 2 * cores, 4 * cores})
    runs = [WorkloadRun(name, args.quick) for name in args.names]
    loaded = [] if args.no_load else [WorkloadRun(n, args.quick, True) for n in args.names]
    extra: dict[str, Any] = {}
    if not args.skip_imports:
        extra["imports"] = imports.measure(args.import_runs)
        ims = extra["imports"]
        say("[imports] " + ", ".join(
            f"{statement}: {ims['importtime_ms'][key]:.1f} ms -X importtime, "
            f"{ims['wall_added_ms'][key]:.1f} ms wall"
            for key, statement in ims["statements"].items()))

    def search(run: WorkloadRun, n_values: list[int]) -> None:
        run.search(n_values)
        top = ", ".join(f"{describe(c)} {t:.3f}s" for c, t in run.grid[:3])
        say(f"[grid] {run.key}: {top}")

    for run in runs:
        search(run, coarse_n if args.quick else fine_n)
    if loaded:
        with BusyLoops(cores):  # one per usable core
            for run in loaded:
                search(run, loaded_n)
    for repeat in range(max(args.repeats, args.load_repeats if loaded else 0)):
        if repeat < args.repeats:
            for run in runs:
                run.measure_repeat(repeat)
                say(run.progress_line(repeat))
        if loaded and repeat < args.load_repeats:
            with BusyLoops(cores):  # one per usable core
                for run in loaded:
                    run.measure_repeat(repeat)
                    say(run.progress_line(repeat))
    if loaded and args.threads_runs:
        extra["threads_workload"] = args.threads_workload
        extra["threads"] = []
        with BusyLoops(cores):  # one per usable core
            for i in range(args.threads_runs):
                out = threads_run(args)
                extra["threads"].append(out)
                say(f"[threads {i + 1}] {' -> '.join(map(str, out['executor_types']))} "
                    f"{out['seconds']:.2f}s")
    if not args.skip_memory:
        items = 2_000_000 if args.quick else 10_000_000
        extra["memory"] = child({"method": "memory", "items": items}, 600)
        say(f"[memory] {extra['memory']}")
    if not args.skip_hooks:
        extra["hooks"] = side_job("benchmarks.hooks_overhead", *(["--quick"] if args.quick
                                                                 else []))
        say("[hooks] measured")
    return {"runs": runs, "loaded": loaded, "extra": extra}


def write(args: argparse.Namespace, page: str, raw: dict[str, Any]) -> None:
    """The page and its raw data, beside each other."""
    path: Path = args.output_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    path.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    print(f"written to {path} and {path.with_suffix('.json').name}")


def from_json(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(measured, raw) read back from a saved .json, for --render."""
    raw: dict[str, Any] = json.loads(Path(path).read_text())
    runs = [WorkloadRun.from_json(r) for r in raw["workloads"].values()]
    extra = dict(raw.get("extra", {}))
    for key in ("memory", "hooks"):
        if raw.get(key) is not None:
            extra[key] = raw[key]
    before = read_before()
    if before is not None and before.get("machine") != raw.get("machine"):
        extra["before"] = before
    return {"runs": [r for r in runs if not r.loaded], "loaded": [r for r in runs if r.loaded],
            "extra": extra}, raw


def main(argv: Optional[list[str]] = None) -> None:
    """Parse options, measure everything, print and write the page."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.render:
        measured, raw = from_json(args.render)
        done = raw["options"]
        if args.write_docs and (done["quick"] or done["repeats"] < 3 or not
                                done["load_repeats"] or set(done["workloads"]) != set(WORKLOADS)):
            sys.exit("--write-docs: that .json is not from a full run")
        page = render(measured["runs"], measured["loaded"], measured["extra"],
                      raw["machine"], raw["options"], raw["seconds"])
        print(page)
        if not args.no_write:
            write(args, page, raw)
        return
    started = time.perf_counter()
    before = read_before()
    info = machine()
    measured = measure(args, info)
    info["load_average_end"] = os.getloadavg()
    seconds = time.perf_counter() - started
    options = {"command": shlex.join(["python", "-m", "benchmarks.run", *argv]),
               "quick": args.quick, "repeats": args.repeats,
               "load_repeats": 0 if args.no_load else args.load_repeats,
               "workloads": args.names}
    extra = measured["extra"]
    page = render(measured["runs"], measured["loaded"], {**extra, "before": before}, info,
                  options, seconds)
    print(page)
    raw = {"machine": info, "options": options, "seconds": seconds,
           "memory": extra.get("memory"), "hooks": extra.get("hooks"),
           "extra": {k: v for k, v in extra.items() if k not in ("memory", "hooks")},
           "before": None if before is None else {"source": before["source"],
                                                   "date": before["machine"].get("date")},
           "workloads": {run.key: vars(run) for run in measured["runs"] + measured["loaded"]}}
    if not args.no_write:
        write(args, page, raw)


if __name__ == "__main__":
    main()
