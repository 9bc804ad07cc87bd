"""Index pools that hand out indices the way vppinfra's ``pool_get``/``pool_put`` do.

VPP reuses freed indices last-freed-first (``free_indices`` is a stack), which is
why a deleted ACL's index is handed to the next new ACL and why drivers must
never persist indices.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Pool(Generic[T]):
    """A vector of slots with a LIFO free list."""

    def __init__(self) -> None:
        self._slots: list[T | None] = []
        self._free: list[int] = []

    def add(self, item: T) -> int:
        if self._free:
            index = self._free.pop()
            self._slots[index] = item
            return index
        self._slots.append(item)
        return len(self._slots) - 1

    def add_at_next(self) -> int:
        """The index the next :meth:`add` will return."""
        return self._free[-1] if self._free else len(self._slots)

    def remove(self, index: int) -> T:
        item = self.get(index)
        if item is None:
            raise KeyError(index)
        self._slots[index] = None
        self._free.append(index)
        return item

    def get(self, index: int) -> T | None:
        if 0 <= index < len(self._slots):
            return self._slots[index]
        return None

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.get(index) is not None

    def items(self) -> Iterator[tuple[int, T]]:
        """Live entries in index order, like ``pool_foreach``."""
        for index, item in enumerate(self._slots):
            if item is not None:
                yield index, item

    def __len__(self) -> int:
        return len(self._slots) - len(self._free)


def lowest_free(used: set[int]) -> int:
    """``clib_bitmap_first_clear``: the smallest non-negative integer not in ``used``."""
    candidate = 0
    while candidate in used:
        candidate += 1
    return candidate
