"""What importing amorsize costs, in fresh interpreters.

    python -m benchmarks.imports [--runs N]

Two measures for each statement (`import amorsize`, `from amorsize import execute`):
- `python -X importtime -c STATEMENT`: the cumulative microseconds of every top-level
  import from `amorsize` on (the package and what its first use pulled in), median of
  the runs. Modules loaded by importlib.import_module (amorsize's lazy names) are not
  logged themselves, only what they import with `import` statements: their own body is
  in the wall time below, not here.
- wall time of `python -c STATEMENT` minus that of `python -c "pass"`: the median of each
  over interleaved runs, each a fresh interpreter started by this process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = {"import": "import amorsize", "from_import": "from amorsize import execute"}


def importtime_ms(statement: str) -> float:
    """Milliseconds -X importtime gives the top-level imports from `amorsize` on."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    total_us, seen = 0, False
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not line.startswith("import time:"):
            continue
        name = parts[2]
        top_level = name.startswith(" ") and not name.startswith("  ")
        if not top_level:
            continue
        seen = seen or name.strip() == "amorsize"
        if seen:
            total_us += int(parts[1])
    if not seen:
        raise RuntimeError(f"no amorsize line in -X importtime of {statement!r}")
    return total_us / 1000


def wall_seconds(code: str) -> float:
    """Wall time of a fresh `python -c code`, start to exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def measure(runs: int) -> dict[str, Any]:
    """Both measures for both statements, `runs` fresh interpreters each."""
    codes = {"bare": "pass", **STATEMENTS}
    for code in codes.values():  # warm-up: bytecode caches written, files in page cache
        wall_seconds(code)
    walls: dict[str, list[float]] = {key: [] for key in codes}
    importtimes: dict[str, list[float]] = {key: [] for key in STATEMENTS}
    for repeat in range(runs):
        keys = list(codes)
        keys = keys[repeat % len(keys):] + keys[:repeat % len(keys)]
        for key in keys:
            walls[key].append(wall_seconds(codes[key]))
        for key, statement in STATEMENTS.items():
            importtimes[key].append(importtime_ms(statement))
    bare = statistics.median(walls["bare"])
    return {
        "runs": runs,
        "statements": STATEMENTS,
        "bare_interpreter_ms": 1000 * bare,
        "wall_added_ms": {key: 1000 * (statistics.median(walls[key]) - bare)
                          for key in STATEMENTS},
        "importtime_ms": {key: statistics.median(v) for key, v in importtimes.items()},
        "raw": {"wall_seconds": walls, "importtime_ms": importtimes},
    }


def main() -> None:
    """Measure and print the import costs."""
    parser = argparse.ArgumentParser(description="amorsize import time")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result = measure(args.runs)
    for key, statement in STATEMENTS.items():
        print(f"{statement}: -X importtime {result['importtime_ms'][key]:.1f} ms, "
              f"wall over a bare interpreter {result['wall_added_ms'][key]:.1f} ms")


if __name__ == "__main__":
    main()
