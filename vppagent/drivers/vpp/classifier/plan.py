"""What the gate (gate.py) works from, however it was found (marked.py, grouped.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vppagent.drivers.vpp.classifier.regions import GapEntry, Unfit, View, entries
from vppagent.policy.boxes import Box
from vppagent.policy.flat import CompiledList
from vppagent.state.model import DataplaneState

Regions = dict[int, list[Box]]  # family -> boxes
MAX_GAP_SESSIONS = 1024  # per (gate, family)
MAX_GAP_TABLES = 8  # per (gate, family): each table is one hash lookup per packet


@dataclass
class Plan:
    state: DataplaneState  # the state the names below refer to (with the aliases)
    order: list[str]  # the chosen sets, heaviest first
    regions: dict[str, Regions]  # R_i: where verdicts of L_i and L_0 may differ
    empty: View  # L_0
    own: Callable[[str], View]  # L_i, on R_i at least
    universe: CompiledList  # L_U, for the ACL
    universe_boxes: list[Box] | None = None  # its rules' boxes (regions.rule_box), when known


class Drop(Exception):
    """These sets cannot be gated (the reason says why): plan again without them."""

    def __init__(self, set_ids: Iterable[str], why: str) -> None:
        self.set_ids = frozenset(set_ids)
        super().__init__(f"{sorted(self.set_ids)}: {why}")


def gap_entries(family: int, boxes: list[Box]) -> list[GapEntry]:
    """A drop region as classifier entries; Unfit when it does not fit (regions.entries) or
    would need more gap sessions or tables than a whole gate may have."""
    found = entries(family, boxes)
    if len(found) > MAX_GAP_SESSIONS or len({e.shape for e in found}) > MAX_GAP_TABLES:
        raise Unfit("too many gap sessions or tables")
    return found
