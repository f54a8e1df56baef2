"""The exceptions a run raises, and exceptions made to survive the trip from a worker.

A function's own exception reaches the caller as its own type whatever the executor:
`except TheirError:` works for serial, thread and process runs alike. Exceptions that
plain pickling cannot carry (an `__init__` with two required arguments, an attribute
holding a lock) are rebuilt by value: same class, same `args`, the same attributes
(None where a value could not be pickled); only a class that cannot be imported by
name becomes a RuntimeError naming it.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional


class WorkerDiedError(BrokenProcessPool):
    """A worker process ended without returning its task (killed, crashed, os._exit)."""


class ExecutionCancelled(Exception):
    """The consumer of execute_iter() stopped reading before the end."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised inside a worker, kept as text."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return "\n\n" + self.traceback_text


class TaskTimeoutError(TimeoutError):
    """A task ran longer than `task_timeout`; names the items it held."""

    def __init__(self, message: str, *, chunk_id: int, start_index: int, item_count: int,
                 timeout: float) -> None:
        super().__init__(message)
        self.chunk_id = chunk_id
        self.start_index = start_index
        self.item_count = item_count
        self.timeout = timeout

    def __reduce__(self) -> Any:
        return (_rebuild_timeout, (str(self), self.chunk_id, self.start_index,
                                   self.item_count, self.timeout))


def _rebuild_timeout(message: str, chunk_id: int, start_index: int, item_count: int,
                     timeout: float) -> TaskTimeoutError:
    return TaskTimeoutError(message, chunk_id=chunk_id, start_index=start_index,
                            item_count=item_count, timeout=timeout)


class FunctionExitedError(RuntimeError):
    """The function called sys.exit() (raised SystemExit) on an item.

    A run never lets an item end the calling program: this names the item instead.
    """

    def __init__(self, message: str, code: Any = None, position: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.position = position


def items_text(start: int, count: int) -> str:
    """'item 7' or 'items 7-12' of the input (positions from 0)."""
    if count <= 1:
        return f"item {start}"
    return f"items {start}-{start + count - 1}"


def name_the_item(error: BaseException, position: Optional[int], first: int,
                  count: int, chunk_id: int) -> BaseException:
    """Say in `error` which input item raised it (a note, Python 3.11+); turn a
    SystemExit into FunctionExitedError naming the item."""
    where = f"the item at input position {position}" if position is not None else (
        f"one of the {items_text(first, count)} of the input")
    if isinstance(error, SystemExit):
        # From args, as SystemExit does: .code is lost where pickling bypasses
        # __init__ (tblib, which dask installs, does).
        args = error.args
        code = None if not args else args[0] if len(args) == 1 else args
        return FunctionExitedError(
            f"the function called sys.exit({code!r}) on {where} (task {chunk_id}); "
            "amorsize stops the run instead of ending the program", code, position)
    if sys.version_info >= (3, 11):
        with contextlib.suppress(Exception):
            error.add_note(f"amorsize: raised on {where} (task {chunk_id})")
    return error


# ---------------------------------------------------------------- by value


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def portable_exception(exc: BaseException) -> Any:
    """Return `exc` if it survives pickling as itself, else a stand-in that unpickles
    as an instance of the same class, rebuilt by value (or a RuntimeError naming it
    when the class cannot be imported by name)."""
    try:
        copy = pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        if type(copy) is type(exc):
            return exc
    except Exception:
        pass
    cls = type(exc)
    message = _safe_str(exc)
    if not _picklable(cls):
        return RuntimeError(f"{cls.__module__}.{cls.__qualname__}: {message} (the "
                            "exception class cannot be imported by name, so it was "
                            "not rebuilt)")
    args = tuple(a if _picklable(a) else repr(a) for a in exc.args)
    # Attributes that cannot travel (a lock, a connection) arrive as None.
    state = {k: (v if _picklable(v) else None)
             for k, v in getattr(exc, "__dict__", {}).items()}
    return ExceptionByValue(cls, args, state, message)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return repr(exc.args)


class ExceptionByValue:
    """Pickles as a call that rebuilds the exception without calling its __init__."""

    def __init__(self, cls: type, args: tuple[Any, ...], state: dict[str, Any],
                 message: str) -> None:
        self.cls = cls
        self.args = args
        self.state = state
        self.message = message

    def __reduce__(self) -> Any:
        return (rebuild_exception, (self.cls, self.args, self.state, self.message))


def rebuild_exception(cls: type, args: tuple[Any, ...], state: dict[str, Any],
                      message: str) -> BaseException:
    """The exception `cls` with `args` and `state`, __init__ not called. Never raises
    (it runs while the parent unpickles a result)."""
    try:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{cls!r} is not an exception class")
        exc = cls.__new__(cls)
        exc.args = args
        exc.__dict__.update(state)
        return exc
    except Exception:
        return RuntimeError(f"{getattr(cls, '__qualname__', cls)}: {message} "
                            "(could not be rebuilt)")
