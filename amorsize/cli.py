"""The `amorsize` command (also `python -m amorsize`).

    amorsize optimize MODULE:FUNC (--items N | --data FILE) [--json]
    amorsize execute MODULE:FUNC --data FILE [--output FILE] [--progress]
                     [--metrics-port P] [--otlp-endpoint URL] [--json]
    amorsize demo [--duration S] [--metrics-port P] [--metrics-addr A]
                  [--otlp-endpoint URL] [--seed N] [--jobs NAME[,NAME...]]
                  [--failure-rate F]

Errors are one line on stderr and a non-zero exit (2: bad arguments, module,
function or file; 1: the job failed); `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional, TextIO

from amorsize import cli_values as values

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "json": json.loads,
}


class CliError(Exception):
    """An error shown as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def load_function(spec: str) -> Callable[[Any], Any]:
    """Import `module:qualname` (the current directory is importable) and return it."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"expected MODULE:FUNC (e.g. mypackage.jobs:process), got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name and module_name.startswith(missing.name):
            raise CliError(f"module {module_name!r} not found (is it on PYTHONPATH?)") from missing
        raise CliError(f"importing module {module_name!r} failed: {missing}") from missing
    except Exception as broken:
        raise CliError(
            f"importing module {module_name!r} failed: {type(broken).__name__}: {broken}"
        ) from broken
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as absent:
            raise CliError(f"{module_name!r} has no attribute {attribute!r}") from absent
    if not callable(target):
        raise CliError(f"{spec} is not callable (it is a {type(target).__name__})")
    return target


def read_items(path: str, parse: str) -> list[Any]:
    """Read one item per line of `path` ('-' for stdin); blank lines are skipped."""
    converter = PARSERS[parse]
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
    except FileNotFoundError as missing:
        raise CliError(f"data file {path!r} not found") from missing
    except IsADirectoryError as directory:
        raise CliError(f"data file {path!r} is a directory") from directory
    except UnicodeDecodeError as undecodable:
        raise CliError(f"data file {path!r} is not UTF-8 text: {undecodable.reason}") from None
    except OSError as unreadable:
        raise CliError(f"cannot read data file {path!r}: {unreadable.strerror}") from unreadable
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(converter(line.strip() if parse != "str" else line))
        except ValueError as bad:
            raise CliError(f"{path}:{number}: not a valid {parse} item: {line[:60]!r}") from bad
    return items


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def optimization_dict(result: Any) -> dict[str, Any]:
    """The decision and its figures as JSON-ready values (NaN becomes null)."""
    return _finite({
        "executor_type": result.executor_type,
        "n_jobs": result.n_jobs,
        "chunksize": result.chunksize,
        "estimated_speedup": result.estimated_speedup,
        "reason": result.reason,
        "warnings": list(result.warnings),
        "total_items": result.total_items,
        "predicted_seconds": result.predicted_seconds,
        "serial_seconds_estimate": result.serial_seconds_estimate,
        "optimization_seconds": result.optimization_seconds,
        "figures": result.figures.values(),
        "revisions": [vars(revision) for revision in result.revisions],
        "final_estimated_speedup": result.final_estimated_speedup,
        "actual_speedup": result.actual_speedup,
    })


def _data_of(args: argparse.Namespace) -> Sequence[Any]:
    if args.data is not None:
        return read_items(args.data, args.parse)
    return range(args.items)


def cmd_optimize(args: argparse.Namespace, out: TextIO) -> int:
    """Print the decision and the measured figures behind it."""
    from amorsize.optimizer import optimize

    func = load_function(args.function)
    data = _data_of(args)
    try:
        result = optimize(func, data, sample_size=args.sample_size)
    except Exception as failed:
        raise CliError(_failure(failed, "while sampling"), EXIT_FAILED) from failed
    if args.json:
        json.dump(optimization_dict(result), out, indent=2, default=str)
        out.write("\n")
    else:
        out.write(result.explain() + "\n")
    return 0


def _failure(error: BaseException, where: str) -> str:
    return f"the function raised {type(error).__name__} {where}: {error}"


def _integrations(
    args: argparse.Namespace, hooks: list[Any], finalizers: list[Callable[[], object]]
) -> None:
    """Add the hooks the flags ask for, and what to call once the job is done."""
    if args.progress:
        from amorsize.integrations.progress import ProgressBarHook

        hooks.append(ProgressBarHook(file=sys.stderr))
    if args.metrics_port is not None:
        from amorsize.integrations.prometheus import PrometheusHook, start_metrics_server

        hooks.append(PrometheusHook())
        server = start_metrics_server(port=args.metrics_port, addr=args.metrics_addr)
        finalizers.append(server.stop)
        print(f"amorsize: serving metrics at {server.url} during the run", file=sys.stderr)
    if args.otlp_endpoint is not None:
        from amorsize.integrations.opentelemetry import (
            OpenTelemetryHook,
            configure_tracing,
            shutdown_tracing,
        )

        provider = configure_tracing(
            service_name="amorsize-cli", endpoint=args.otlp_endpoint, set_global=False
        )
        hooks.append(OpenTelemetryHook(tracer_provider=provider))
        finalizers.append(functools.partial(shutdown_tracing, provider))
    if args.report is not None or args.trace_json is not None:
        from amorsize.report import ReportHook

        hooks.append(ReportHook(args.report, trace_path=args.trace_json))


def cmd_execute(args: argparse.Namespace, out: TextIO) -> int:
    """Run the job and write one result per line."""
    from amorsize.executor import execute

    func = load_function(args.function)
    data = read_items(args.data, args.parse)
    hooks: list[Any] = []
    finalizers: list[Callable[[], object]] = []
    try:
        try:
            _integrations(args, hooks, finalizers)
        except ImportError as missing:
            raise CliError(str(missing)) from missing
        except OSError as unavailable:
            raise CliError(str(unavailable)) from unavailable
        started = time.perf_counter()
        try:
            results, decision = execute(
                func, data, hooks or None, n_jobs=args.n_jobs, chunksize=args.chunksize,
                sample_size=args.sample_size, return_optimization_result=True,
            )
        except Exception as failed:
            if args.debug:
                raise
            raise CliError(_failure(failed, "during the run"), EXIT_FAILED) from failed
    finally:
        for finalize in finalizers:
            finalize()
    elapsed = time.perf_counter() - started
    target = out
    handle: Optional[TextIO] = None
    if args.output is not None and args.output != "-":
        try:
            handle = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as unwritable:
            raise CliError(
                f"cannot write output file {args.output!r}: {unwritable.strerror}"
            ) from unwritable
        target = handle
    try:
        for value in results:
            line = json.dumps(value, default=str) if args.json else str(value)
            target.write(line + "\n")
    finally:
        if handle is not None:
            handle.close()
    print(
        f"amorsize: {len(results)} items in {elapsed:.3f} s "
        f"({decision.executor_type}, n_jobs={decision.n_jobs}, "
        f"chunksize={decision.chunksize})",
        file=sys.stderr,
    )
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo job mix (amorsize.demo) with metrics and tracing."""
    from amorsize.demo import run_demo

    code = run_demo(
        duration=args.duration,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        otlp_endpoint=args.otlp_endpoint,
        seed=args.seed,
        jobs=args.jobs,
        failure_rate=args.failure_rate,
        report=args.report,
        trace_json=args.trace_json,
    )
    return int(code or 0)


def _report_options(parser: argparse.ArgumentParser, which: str) -> None:
    parser.add_argument("--report", metavar="PATH",
                        help=f"write an HTML report {which} (opens from disk, no network)")
    parser.add_argument("--trace-json", metavar="PATH",
                        help=f"write a Chrome trace {which} (chrome://tracing, Perfetto)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `amorsize` command."""
    from amorsize import __version__
    from amorsize.demo import DEFAULT_FAILURE_RATE, JOB_NAMES

    parser = argparse.ArgumentParser(
        prog="amorsize",
        description="Run a function over many items in parallel, decided by measurement.",
    )
    parser.add_argument("--version", action="version", version=f"amorsize {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("function", metavar="MODULE:FUNC", help="the function to run per item")
    job.add_argument("--parse", choices=sorted(PARSERS), default="str",
                     help="how to read each line of --data (default: str)")
    job.add_argument("--sample-size", type=values.positive_int, default=5,
                     help="items to dry-run (default: 5)")
    job.add_argument("--json", action="store_true", help="machine-readable output")

    opt = sub.add_parser("optimize", parents=[common, job],
                         help="print the decision and the figures behind it")
    source = opt.add_mutually_exclusive_group(required=True)
    source.add_argument("--items", type=values.positive_int, metavar="N",
                        help="run on the integers 0..N-1")
    source.add_argument("--data", metavar="FILE", help="one item per line ('-' for stdin)")
    opt.set_defaults(handler=cmd_optimize)

    run = sub.add_parser("execute", parents=[common, job], help="run the job")
    run.add_argument("--data", metavar="FILE", required=True,
                     help="one item per line ('-' for stdin)")
    run.add_argument("--output", metavar="FILE", help="write results here (default: stdout)")
    run.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    run.add_argument("--metrics-port", type=values.port, metavar="P",
                     help="serve Prometheus metrics on this port during the run")
    run.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                     help="address of the metrics server (default: 127.0.0.1)")
    run.add_argument("--otlp-endpoint", metavar="URL",
                     help="send traces over OTLP/HTTP to this endpoint")
    _report_options(run, "of the run")
    run.add_argument("--n-jobs", type=values.positive_int, help="fix the number of workers")
    run.add_argument("--chunksize", type=values.positive_int, help="fix the items per task")
    run.set_defaults(handler=cmd_execute)

    demo = sub.add_parser("demo", parents=[common],
                          help="run a demo job mix with metrics (for the dashboard)")
    demo.add_argument("--duration", type=values.seconds, metavar="SECONDS",
                      help="stop after this long (default: run until Ctrl-C)")
    demo.add_argument("--metrics-port", type=values.port, default=9464, metavar="PORT",
                      help="Prometheus metrics port (default: 9464)")
    demo.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                      help="metrics server address (default: 127.0.0.1)")
    demo.add_argument("--otlp-endpoint", metavar="URL", help="OTLP/HTTP traces endpoint")
    demo.add_argument("--seed", type=int, help="random seed of the job mix")
    _report_options(demo, "of the latest job (rewritten after each)")
    demo.add_argument("--jobs", type=values.demo_jobs, metavar="NAME[,NAME...]",
                      help=f"run only these jobs of the mix: {', '.join(JOB_NAMES)} "
                           "(default: all)")
    demo.add_argument("--failure-rate", type=values.probability, default=DEFAULT_FAILURE_RATE,
                      metavar="F", help="probability that a run of the flaky job fails "
                                        f"(default: {DEFAULT_FAILURE_RATE})")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: parse `argv`, run the command, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, sys.stdout))
    except CliError as error:
        if args.debug:
            raise
        print(f"amorsize: error: {error}", file=sys.stderr)
        return error.code
    except BrokenPipeError:
        # The reader went away (`amorsize execute ... | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("amorsize: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        print(f"amorsize: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
