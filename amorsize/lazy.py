"""Names a module offers but imports on first use (PEP 562 `__getattr__`).

`import amorsize` stays cheap because its public names load their modules only when
read; amorsize.hooks keeps names that moved to other modules readable the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(owner: str, exports: Mapping[str, str], namespace: dict[str, Any]
               ) -> Callable[[str], Any]:
    """A module `__getattr__` for `owner`: each name in `exports` is read from the
    module it maps to on first use, then kept in `namespace` (the module's globals)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
