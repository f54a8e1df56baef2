"""What the machine offers: cgroup limits (fake cgroup trees), affinity, memory, costs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import psutil
import pytest

from amorsize import system


def cgroup(root: Path, files: dict[str, str]) -> Path:
    """Write a fake cgroup tree under `root` and return it."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    return root


# ------------------------------------------------------------------ CPU quota


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000"}, 2.0),
        ({"cpu.max": "50000 100000"}, 0.5),
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "max 100000"}, None),
        ({"cpu.max": "max"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "25000"}, None),
        ({}, None),
    ],
    ids=["v2-2", "v2-half", "v2-1.5", "v2-max", "v2-max-only", "v1-3", "v1-unlimited",
         "v1-no-period", "none"],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str],
                          expected: Optional[float]) -> None:
    assert system.cgroup_cpu_quota(cgroup(tmp_path, files)) == expected


def test_cgroup_v2_takes_precedence_over_v1(tmp_path: Path) -> None:
    root = cgroup(tmp_path, {
        "cpu.max": "100000 100000",
        "cpu/cpu.cfs_quota_us": "400000",
        "cpu/cpu.cfs_period_us": "100000",
    })
    assert system.cgroup_cpu_quota(root) == 1.0


# ------------------------------------------------------------------ memory limit


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1000000", "memory.current": "400000"}, 600000),
        ({"memory.max": "1000", "memory.current": "5000"}, 0),
        ({"memory.max": "max", "memory.current": "400000"}, None),
        ({"memory/memory.limit_in_bytes": "2000000",
          "memory/memory.usage_in_bytes": "500000"}, 1500000),
        ({"memory/memory.limit_in_bytes": str(2**63 - 4096),
          "memory/memory.usage_in_bytes": "500000"}, None),
        ({"memory.max": "1000000"}, None),
        ({}, None),
    ],
    ids=["v2", "v2-over", "v2-max", "v1", "v1-unlimited", "v2-no-usage", "none"],
)
def test_cgroup_memory_available(tmp_path: Path, files: dict[str, str],
                                 expected: Optional[int]) -> None:
    assert system.cgroup_memory_available(cgroup(tmp_path, files)) == expected


def test_available_memory_respects_the_cgroup_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    unlimited = system.available_memory()
    assert unlimited > 0
    monkeypatch.setattr(system, "cgroup_memory_available", lambda: 12345)
    assert system.available_memory() == 12345


# ------------------------------------------------------------------ cores


def test_usable_cores_within_affinity() -> None:
    cores = system.usable_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


def test_usable_cores_respects_the_cpu_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "cgroup_cpu_quota", lambda: 0.5)
    assert system.usable_cores() == 1
    monkeypatch.setattr(system, "cgroup_cpu_quota", lambda: 1000.0)
    assert system.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(system, "cgroup_cpu_quota", lambda: 1.7)
    assert system.usable_cores() == 1


def test_usable_cores_respects_affinity_in_a_pinned_process() -> None:
    code = textwrap.dedent(
        """
        import os
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        from amorsize import system
        print(system.usable_cores())
        """
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    assert output.strip() == "1"


def test_physical_cores_and_start_method() -> None:
    assert 1 <= system.physical_cores() <= (psutil.cpu_count() or 1)
    assert system.start_method() in ("fork", "spawn", "forkserver")


# ------------------------------------------------------------------ measured costs


def test_process_start_is_assumed_until_measured_and_keeps_the_smallest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "_measured_start", {})
    assumed = system.process_start_seconds("spawn")
    assert assumed == system.ASSUMED_PROCESS_START["spawn"]
    system.note_process_start("spawn", 0.05)
    system.note_process_start("spawn", 0.2)  # a busy moment: slower, not kept
    system.note_process_start("spawn", float("nan"))
    assert system.process_start_seconds("spawn") == 0.05
    assert system.process_start_seconds("fork") == system.ASSUMED_PROCESS_START["fork"]


def test_machine_costs_carry_the_limits() -> None:
    costs = system.machine_costs()
    assert costs.cores == system.usable_cores()
    assert costs.available_memory > 0
    assert costs.process_start > 0 and costs.gil == system.gil_enabled()


def test_available_memory_matches_psutil_where_meminfo_is_read() -> None:
    import psutil

    ours = system.available_memory()
    theirs = psutil.virtual_memory().available
    assert 0 < ours <= 2 * theirs and theirs <= 2 * ours  # same figure, read apart


def test_a_worker_process_uses_its_share_of_the_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from amorsize import lifeline

    monkeypatch.setattr(lifeline, "_core_budget", 1)
    assert system.usable_cores() == 1
