"""A box minus a list of cuts, resumed where another list of cuts for the same box left off.

The gate's admit regions (regions.Slice.allowed) are each set's marker box minus the earlier
denies of its list: the sets of one list allowed on the same port have the same box and meet
the same denies, each up to its own place in the list. `subtract_all` takes the cuts one at a
time, so the result after the first n cuts of a list depends on those n cuts only: kept per box
(a `Trail`), a later list of cuts sharing its first n cuts starts from there. The result is
the very list `subtract_all` gives for the whole list (the same boxes in the same order, and
None where it would stop at the limit), so nothing downstream can tell.
"""

from __future__ import annotations

from dataclasses import dataclass

from vppagent.policy.boxes import Box, subtract_all


@dataclass
class Trail:
    cuts: tuple[Box, ...]
    after: list[list[Box] | None]  # after[i]: the box minus cuts[:i] (None: over the limit)


class Trails:
    """subtract_all([box], cuts, w, limit), remembered per box as trails of results."""

    def __init__(self, w: int, limit: int) -> None:
        self.w, self.limit = w, limit
        self._trails: dict[Box, list[Trail]] = {}

    def minus(self, box: Box, cuts: tuple[Box, ...]) -> list[Box] | None:
        trails = self._trails.setdefault(box, [])
        best: Trail | None = None
        shared = 0
        for trail in trails:
            n = _common(trail.cuts, cuts)
            if n > shared or best is None:
                best, shared = trail, n
        after: list[list[Box] | None] = best.after[:shared + 1] if best is not None else [[box]]
        result = after[-1]
        for cut in cuts[shared:]:
            if result is not None:
                result = subtract_all(result, [cut], self.w, self.limit)
            after.append(result)
        if best is not None and shared == len(best.cuts):
            trails.remove(best)  # (the new trail holds all of it)
        trails.append(Trail(cuts, after))
        return result


def _common(a: tuple[Box, ...], b: tuple[Box, ...]) -> int:
    """The length of the longest common prefix."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i
