"""Every Python block of the README and docs/ runs, as written, as a file of its own.

A block that needs something outside (a cluster, a collector) says so on its first
line, `# needs: ...`, and is not run here; every other block is. Each runs in a fresh
interpreter in an empty directory, with the repository importable, so a block that
relies on a name it does not define or import, or that starts processes without the
`if __name__ == "__main__":` guard, fails here as it would for a reader.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
NEEDS = "# needs:"


def blocks() -> list[tuple[str, str]]:
    """(id, code) of every Python block that can run here."""
    found = []
    for document in DOCUMENTS:
        for number, match in enumerate(BLOCK.finditer(document.read_text()), start=1):
            code = match.group(1)
            if code.lstrip().startswith(NEEDS):
                continue
            found.append((f"{document.relative_to(ROOT)}#{number}", code))
    return found


def test_the_documents_have_blocks_to_run() -> None:
    assert len(blocks()) >= 5
    assert any(document == "README.md" for document in
               (name.split("#")[0] for name, _ in blocks()))


def test_blocks_that_cannot_run_here_say_what_they_need() -> None:
    for document in DOCUMENTS:
        for match in BLOCK.finditer(document.read_text()):
            code = match.group(1).lstrip()
            if code.startswith(NEEDS):
                assert code.split("\n", 1)[0].strip() != NEEDS, "say what it needs"


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("name", "code"), blocks(), ids=[name for name, _ in blocks()])
def test_a_python_block_runs_as_written(name: str, code: str, tmp_path: Path,
                                        no_leftover_children: None) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
