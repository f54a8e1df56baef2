"""One workload measured in one setting (a quiet machine, or one busy loop per core):
the grid search for its limit and the interleaved repeats of every method.

Every measurement runs in a fresh child process (benchmarks/child.py), so each method
starts cold: amorsize's first call measures the machine's costs from scratch, Pool,
joblib and mpire start their workers.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

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
RIVALS = ("pool", "joblib", "mpire")
TOP_CONFIGS = 3
SERIAL = json.dumps(["serial", 1, 0])


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
        stdout, _ = process.communicate()
        # A child may have printed what it measured before the part that never ended.
        lines = stdout.strip().splitlines()
        if not lines:
            return None
        return {**json.loads(lines[-1]), "timed_out": timeout}
    if process.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{stderr}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def describe(config: list[Any]) -> str:
    """A grid configuration as text."""
    kind, n_jobs, chunksize = config
    return "serial" if kind == "serial" else f"{kind} n={n_jobs} c={chunksize}"


class WorkloadRun:
    """Everything measured for one workload in one setting, across repeats."""

    def __init__(self, name: str, quick: bool, loaded: bool = False) -> None:
        self.name = name
        self.quick = quick
        self.loaded = loaded  # measured with one busy loop per core beside it
        self.times: dict[str, list[float]] = {k: [] for k in LABELS}
        self.timed_out: dict[str, float] = {}
        # Each candidate configuration's time in every repeat (None: cut off).
        self.config_times: dict[str, list[Optional[float]]] = {}
        self.grid: list[tuple[list[Any], float]] = []
        self.grid_n_values: list[int] = []
        self.decisions: list[dict[str, Any]] = []
        self.hangs: list[dict[str, Any]] = []  # amorsize calls that never returned

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkloadRun:
        """A run read back from a benchmarks.json (this format or the one before)."""
        run = cls(raw["name"], raw.get("quick", False), raw.get("loaded", False))
        for key, value in raw.items():
            if hasattr(run, key):
                setattr(run, key, value)
        run.times = {k: [math.inf if v is None else v for v in values]
                     for k, values in run.times.items()}
        return run

    @property
    def key(self) -> str:
        """The name in the JSON and in progress lines."""
        return f"{self.name}+load" if self.loaded else self.name

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

    def ratio_values(self, key: str) -> list[float]:
        """The method's time / the limit of the same repeat, one per repeat (measured
        side by side, so slow phases of the shared machine cancel out); [] if the
        method was measured once (then capped)."""
        values, limits = self.times[key], self.limits()
        if not values or len(values) != len(limits):
            return []
        return [v / lim for v, lim in zip(values, limits, strict=True)]

    def ratio(self, key: str) -> Optional[float]:
        """Median over repeats of the method's time / the limit of the same repeat."""
        values = self.times[key]
        if not values:
            return None
        ratios = self.ratio_values(key)
        if not ratios:  # measured once (then capped): use the medians
            return statistics.median(values) / self.limit
        return statistics.median(ratios)

    def paired_values(self, key: str, baseline: str) -> list[float]:
        """key's time / baseline's time in the same repeat, one per repeat."""
        return [v / b for v, b in zip(self.times[key], self.times[baseline], strict=False)
                if b > 0]

    def paired(self, key: str, baseline: str) -> float:
        """Median over repeats of key's time / baseline's time in the same repeat."""
        pairs = self.paired_values(key, baseline)
        return statistics.median(pairs) if pairs else math.nan

    def search(self, n_values: list[int]) -> None:
        """The grid search, in one child process (a coarse single-shot search whose best
        few configurations are then re-measured every repeat)."""
        self.grid_n_values = sorted(set(n_values))
        out = child(self.spec("grid", n_values=self.grid_n_values), 900)
        if out is None:
            raise RuntimeError(f"grid search of {self.key} timed out")
        self.grid = [(list(c), t) for c, t in out["found"]]

    def method_cap(self) -> float:
        """Time limit for one competitor measurement: far beyond any reasonable result."""
        base = self.median("serial") or 1.0
        return max(8.0, 12 * base)

    def measure_repeat(self, repeat: int) -> None:
        """One interleaved round: every method once, order rotated by `repeat`."""
        methods = list(COMPETITORS) + ["limit"]
        shift = repeat % len(methods)
        serial: Optional[float] = None
        for method in methods[shift:] + methods[:shift]:
            if method in self.timed_out:
                continue
            if method == "limit":
                self._measure_limit()
                continue
            cap = self.method_cap()
            out = child(self.spec(method), cap + 5)
            if method == "amorsize":
                self._amorsize(out, cap + 5, repeat)
                continue
            if out is None:
                self.timed_out[method] = cap
                continue
            if out["seconds"] > cap and method != "serial":
                self.timed_out[method] = cap
            self.times[method].append(out["seconds"])
            if method == "serial":
                serial = out["seconds"]
        # Serial is a candidate for the limit too: the same measurement (a list
        # comprehension in a fresh process), taken once per repeat.
        self.config_times.setdefault(SERIAL, []).append(serial)

    def _amorsize(self, out: Optional[dict[str, Any]], timeout: float, repeat: int) -> None:
        """Keep amorsize's first and repeated call. A call that never returned counts as
        infinitely slow in that repeat (and is listed in `hangs`); the next repeat
        measures amorsize again."""
        out = out or {"timed_out": timeout}
        if "timed_out" in out:
            hung = "repeat" if "first" in out else "first"
            self.hangs.append({"repeat": repeat, "call": hung, "after_seconds": timeout})
        for label in ("first", "repeat"):
            self.times[label].append(out[label]["seconds"] if label in out else math.inf)
        if "first" in out:
            self.decisions.append(out)

    def _measure_limit(self) -> None:
        # Each configuration in its own fresh process, like every other method: a
        # process that already ran one has a warm heap (large results reuse its memory)
        # and warm caches.
        configs = [c for c, _ in self.grid[:TOP_CONFIGS] if json.dumps(c) != SERIAL]
        cutoff = 3 * self.grid[0][1] + 1
        for config in configs:
            out = child(self.spec("configs", configs=[config], cutoff=cutoff), cutoff + 30)
            time_taken = out["times"][0] if out is not None else None
            self.config_times.setdefault(json.dumps(config), []).append(time_taken)

    def progress_line(self, repeat: int) -> str:
        """What the last repeat measured, for the console."""
        return (f"[repeat {repeat + 1}] {self.key}: "
                + ", ".join(f"{k} {v[-1]:.3f}" for k, v in self.times.items() if v)
                + ", configs " + ", ".join(
                    f"{describe(json.loads(k))} {v[-1]:.3f}" if v[-1] is not None
                    else f"{describe(json.loads(k))} cut off"
                    for k, v in self.config_times.items()))
