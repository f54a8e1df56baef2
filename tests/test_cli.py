"""The `amorsize` command, run in-process through main(argv) and once as `python -m`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import amorsize.demo
from amorsize.cli import main
from tests.otlp_receiver import OTLPReceiver

REPO = Path(__file__).resolve().parent.parent

JOBS = textwrap.dedent(
    """
    import os
    import time
    import urllib.request

    def double(x):
        return int(x) * 2

    def slow_double(x):
        time.sleep(0.002)
        return int(x) * 2

    def boom(x):
        if int(x) == 3:
            raise ValueError("three is not allowed")
        return x

    def as_record(x):
        return {"item": x, "square": x * x}

    class Tools:
        @staticmethod
        def triple(x):
            return int(x) * 3

    def scrape_once(x):
        if int(x) == 10:  # by then the first chunks are done
            url = "http://127.0.0.1:" + os.environ["AMORSIZE_TEST_PORT"] + "/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                with open("scraped.txt", "wb") as out:
                    out.write(response.read())
        return x

    VALUE = 3
    """
)


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of job functions in the current directory; returns its name."""
    name = f"clijobs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(JOBS)
    (tmp_path / "numbers.txt").write_text("\n".join(str(i) for i in range(1, 21)) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command in-process; return exit code, stdout, stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    """The error is one line starting with 'amorsize: error:', without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("amorsize: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_optimize_items_prints_decision_and_figures(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["optimize", f"{jobs}:double", "--items", "500"], capsys)
    assert code == 0
    assert out.startswith("decision: serial, n_jobs=1")
    assert "reason: " in out
    assert "sampled items: 5" in out
    assert "mean item time (s): " in out


def test_optimize_data_json(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["optimize", f"{jobs}:slow_double", "--data", "numbers.txt", "--json"],
                       capsys)
    assert code == 0
    decision = json.loads(out)
    assert decision["total_items"] == 20
    assert decision["executor_type"] in ("serial", "thread", "process")
    assert decision["n_jobs"] >= 1 and decision["chunksize"] >= 1
    assert isinstance(decision["reason"], str) and decision["reason"]
    assert decision["figures"]["sampled_items"] >= 1


def test_execute_writes_results_to_output_file(
    jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["execute", f"{jobs}:Tools.triple", "--data", "numbers.txt", "--output", "out.txt"],
        capsys,
    )
    assert code == 0
    assert out == ""
    assert (tmp_path / "out.txt").read_text().split() == [str(3 * i) for i in range(1, 21)]
    assert err.startswith("amorsize: 20 items in ")


def test_execute_json_parse_and_fixed_workers(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["execute", f"{jobs}:as_record", "--data", "numbers.txt", "--parse", "int", "--json",
         "--n-jobs", "2", "--chunksize", "4"],
        capsys,
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [{"item": i, "square": i * i} for i in range(1, 21)]
    assert "n_jobs=2, chunksize=4" in err


def test_execute_progress_bar_on_stderr(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["execute", f"{jobs}:slow_double", "--data", "numbers.txt", "--progress"], capsys
    )
    assert code == 0
    assert out.split() == [str(2 * i) for i in range(1, 21)]
    assert "20/20" in err
    assert "item/s" in err


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["execute", "no_such_module_xyz:f", "--data", "numbers.txt"],
         ["module 'no_such_module_xyz' not found"]),
        (["execute", "{jobs}:VALUE", "--data", "numbers.txt"], ["is not callable"]),
        (["execute", "{jobs}:missing", "--data", "numbers.txt"], ["has no attribute 'missing'"]),
        (["execute", "{jobs}", "--data", "numbers.txt"], ["expected MODULE:FUNC"]),
        (["execute", "{jobs}:double", "--data", "absent.txt"], ["'absent.txt' not found"]),
        (["execute", "{jobs}:double", "--data", "."], ["is a directory"]),
        (["optimize", "{jobs}:double", "--data", "words.txt", "--parse", "int"],
         ["words.txt:2: not a valid int item"]),
        (["execute", "{jobs}:double", "--data", "binary.dat"], ["not UTF-8 text"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    jobs: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragments: list[str],
) -> None:
    (tmp_path / "words.txt").write_text("1\ntwo\n3\n")
    (tmp_path / "binary.dat").write_bytes(b"\xff\xfe\x00\x81")
    code, out, err = run([arg.format(jobs=jobs) for arg in argv], capsys)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, *fragments)


def test_module_that_fails_to_import(
    jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_xyz\n")
    code, _, err = run(["optimize", f"{name}:f", "--items", "10"], capsys)
    assert code == 2
    assert_one_line_error(err, f"importing module '{name}' failed", "no_such_dependency_xyz")


def test_function_failure_is_one_line_exit_1(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["execute", f"{jobs}:boom", "--data", "numbers.txt"], capsys)
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "ValueError", "three is not allowed")
    code, _, err = run(["optimize", f"{jobs}:boom", "--items", "10"], capsys)
    assert code == 1
    assert_one_line_error(err, "ValueError", "while sampling")


def test_debug_shows_the_real_exception(jobs: str) -> None:
    with pytest.raises(ValueError, match="three is not allowed"):
        main(["execute", f"{jobs}:boom", "--data", "numbers.txt", "--debug"])


def test_argparse_errors_exit_2(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["execute", f"{jobs}:double"],  # --data is required
        ["optimize", f"{jobs}:double", "--items", "5", "--data", "numbers.txt"],
        ["optimize", f"{jobs}:double", "--items", "0"],
        ["demo", "--metrics-port", "70000"],
        [],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "usage: amorsize" in capsys.readouterr().err


def test_demo_dispatches_to_run_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_demo(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(amorsize.demo, "run_demo", fake_run_demo)
    assert main(["demo", "--duration", "2.5", "--metrics-port", "9999", "--metrics-addr",
                 "0.0.0.0", "--otlp-endpoint", "http://jaeger:4318", "--seed", "7"]) == 0
    assert main(["demo"]) == 0
    assert main(["demo", "--report", "r.html", "--trace-json", "t.json"]) == 0
    assert calls == [
        {"duration": 2.5, "metrics_port": 9999, "metrics_addr": "0.0.0.0",
         "otlp_endpoint": "http://jaeger:4318", "seed": 7, "jobs": None,
         "failure_rate": 0.35, "report": None, "trace_json": None},
        {"duration": None, "metrics_port": 9464, "metrics_addr": "127.0.0.1",
         "otlp_endpoint": None, "seed": None, "jobs": None, "failure_rate": 0.35,
         "report": None, "trace_json": None},
        {"duration": None, "metrics_port": 9464, "metrics_addr": "127.0.0.1",
         "otlp_endpoint": None, "seed": None, "jobs": None, "failure_rate": 0.35,
         "report": "r.html", "trace_json": "t.json"},
    ]


def test_execute_writes_a_report_and_a_chrome_trace(
    jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["execute", f"{jobs}:Tools.triple", "--data", "numbers.txt",
                        "--report", "run.html", "--trace-json", "run.json"], capsys)
    assert code == 0 and out.split() == [str(3 * i) for i in range(1, 21)]
    assert "Tools.triple" in (tmp_path / "run.html").read_text()
    trace = json.loads((tmp_path / "run.json").read_text())
    chunks = [e for e in trace["traceEvents"] if e.get("ph") == "X" and "chunk" in e["cat"]]
    assert sum(e["args"]["items"] for e in chunks) == 20


def test_demo_writes_the_report_of_its_latest_job(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    done = subprocess.run(
        [sys.executable, "-m", "amorsize", "demo", "--duration", "0.5", "--metrics-port",
         "0", "--jobs", "cheap", "--seed", "1", "--report", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cheap_item" in report.read_text()


def test_python_dash_m_subprocess(jobs: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-m", "amorsize", "execute", f"{jobs}:double", "--data", "-",
         "--parse", "int"],
        input="5\n6\n7\n", capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "12", "14"]
    failed = subprocess.run(
        [sys.executable, "-m", "amorsize", "optimize", "nowhere_xyz:f", "--items", "3"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "amorsize: error: module 'nowhere_xyz' not found (is it on PYTHONPATH?)"
    )


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_execute_serves_prometheus_metrics_during_the_run(
    jobs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    monkeypatch.setenv("AMORSIZE_TEST_PORT", str(port))
    code, out, err = run(
        ["execute", f"{jobs}:scrape_once", "--data", "numbers.txt", "--n-jobs", "1",
         "--chunksize", "5", "--metrics-port", str(port)],
        capsys,
    )
    assert code == 0, err
    assert out.split() == [str(i) for i in range(1, 21)]
    assert f"serving metrics at http://127.0.0.1:{port}/metrics" in err
    scraped = (tmp_path / "scraped.txt").read_text()
    label = f'function="{jobs}:scrape_once"'
    assert any(line.startswith("amorsize_executions_in_progress{") and label in line
               and line.endswith(" 1.0") for line in scraped.splitlines())
    assert f"amorsize_items_processed_total{{{label}}}" in scraped
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the server stopped with the run


def test_metrics_port_in_use_is_one_line(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["execute", f"{jobs}:double", "--data", "numbers.txt",
                            "--metrics-port", str(port)], capsys)
    assert code == 2
    assert_one_line_error(err, f"port {port} is already in use")


def test_execute_sends_spans_to_an_otlp_endpoint(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with OTLPReceiver() as receiver:
        code, out, err = run(
            ["execute", f"{jobs}:double", "--data", "numbers.txt", "--n-jobs", "2",
             "--chunksize", "5", "--otlp-endpoint", receiver.url],
            capsys,
        )
        spans = receiver.spans()
    assert code == 0, err
    assert len(out.split()) == 20
    names = [span.name for _, _, span in spans]
    assert names.count("amorsize.execute") == 1
    assert names.count("amorsize.chunk") == 4
    services = {resource.get("service.name") for resource, _, _ in spans}
    assert services == {"amorsize-cli"}


def test_demo_runs_for_real_through_python_dash_m(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-m", "amorsize", "demo", "--duration", "1", "--metrics-port", "0",
         "--seed", "3"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "demo finished" in done.stdout + done.stderr
