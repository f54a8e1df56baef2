"""The values the `amorsize` command's options accept: each turns the text into a value
or says, in argparse's own error line, what was expected."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def _converted(text: str, convert: Callable[[str], _T], expected: str) -> _T:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts of items, workers)."""
    value = _converted(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = _converted(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def seconds(text: str) -> float:
    """A finite duration above zero."""
    value = _converted(text, float, "seconds")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def demo_jobs(text: str) -> list[str]:
    """Names of the demo's jobs, comma-separated."""
    from amorsize.demo import JOB_NAMES

    jobs = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(jobs) - set(JOB_NAMES))
    if not jobs or unknown:
        raise argparse.ArgumentTypeError(
            f"expected NAME[,NAME...] from {','.join(JOB_NAMES)}, got {text!r}")
    return jobs


def probability(text: str) -> float:
    """A number from 0 to 1."""
    value = _converted(text, float, "a number from 0 to 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value
