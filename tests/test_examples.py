"""Every script in examples/ runs to completion and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# What each example must print (stdout and stderr together).
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": ["cheap", "heavy", "io_bound", "estimated speedup"],
    "progress_monitoring.py": ["400/400", "300 thumbnails", "100.0% (400/400)", "done"],
    "custom_metrics.py": ["600 results", "status: success", "chunks: ", "worker pid:"],
    "timing_stages.py": ["__main__:fetch", "__main__:parse", "__main__:score",
                         "pipeline: 300 items"],
    "error_handling.py": ["ALERT __main__:process error: BadRecord", "caught BadRecord",
                          "run ended: status=error", "495 ok, 5 failed"],
    "prometheus_and_tracing.py": [
        'amorsize_executions_total{function="__main__:render",status="success"} 1.0',
        'amorsize_errors_total{error_type="RuntimeError",function="__main__:flaky"} 1.0',
        "amorsize.execute __main__:flaky status=ERROR",
    ],
    "throughput_monitoring.py": ["average so far:", "final: ", "slowdown warnings:"],
    # One line per worker ("worker N:  ... items  busy ..."): one worker on one core.
    "live_console_dashboard.py": ["100.0%  3000/3000", " items  busy ", "success: speedup",
                                  "3000 results"],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    for expected in EXPECTED[name]:
        assert expected in output, f"{expected!r} missing from the output of {name}"
