"""A slice of a list, tuple or range read in place.

A task in the calling process runs its items straight from the caller's input:
copying a slice of a huge input of cheap items costs a noticeable share of running
them (serial runs are meant to cost what a list comprehension costs).

Only the built-in types themselves: their iterators know how many items they have left
(`operator.length_hint`) and can be positioned (`__setstate__`, their pickling hook),
which a subclass's own `__iter__` need not offer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Union, overload

READ_IN_PLACE = (list, tuple, range)


def readable_in_place(data: object) -> bool:
    """Whether `data` is a list, tuple or range (not a subclass): see the module doc."""
    return type(data) in READ_IN_PLACE


class InputSlice(Sequence[Any]):
    """Items start..stop of a list, tuple or range, without a copy."""

    def __init__(self, data: Union[list[Any], tuple[Any, ...], range], start: int, stop: int
                 ) -> None:
        self.data, self.start, self.stop = data, start, max(start, stop)

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            first, last, stride = index.indices(len(self))
            return list(self.data[self.start + first:self.start + last:stride])
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.data[self.start + index % len(self)]

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(self.reader(), len(self))

    def reader(self) -> Iterator[Any]:
        """The input's own iterator, positioned at `start`. It runs on past `stop`, so a
        reader counts what it takes; it knows how many items are left
        (`operator.length_hint`), which tells a failing item's position."""
        iterator = iter(self.data)
        if self.start:
            iterator.__setstate__(self.start)  # type: ignore[attr-defined]
        return iterator
