"""Reading classifier chains back from VPP, and telling ours from anyone else's.

Every session the driver adds carries `OUR_OPAQUE` (layout.py). A chain is ours when, walked from
a head (a table no other table points to):
- it holds at least one session, and every session in it carries OUR_OPAQUE;
- its tables are admit tables (every session hits permit; a table may be empty) followed by gap
  tables (protocol always masked; at least one session each, every one hits drop), all of one
  family's layout, and its end misses to permit; at least one of each;
- none of its tables is also reached from another head.
Anything else is left alone. Why the mark changes no verdict: docs/vpp-driver.md, "Restarts and
adoption".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import ClassifySession, ClassifyTableInfo
from vppagent.drivers.vpp.classifier.layout import DROP, LAYOUT, OUR_OPAQUE, PERMIT

log = logging.getLogger(__name__)

# A chain's gap part as it can be compared with what a gate needs: (mask, matches) per table, in order.
GapSignature = tuple[tuple[bytes, frozenset[bytes]], ...]


@dataclass
class FoundChain:
    """One chain of ours as VPP holds it."""

    family: int
    tables: list[int]  # head first
    admit_tables: dict[bytes, int]  # mask -> table index
    gap_head: int
    gaps: GapSignature
    sessions: set[tuple[bytes, bytes]] = field(default_factory=set)  # admit sessions: (mask, match)

    @property
    def head(self) -> int:
        return self.tables[0]


@dataclass
class _Table:
    info: ClassifyTableInfo
    sessions: list[ClassifySession]


def read_chains(calls: VppCalls) -> list[FoundChain]:
    """Our chains in VPP (reads only: table ids, then info and sessions per table)."""
    ids = calls.classify_table_ids()
    if not ids:
        return []
    tables: dict[int, _Table] = {}
    for index in ids:
        info = calls.classify_table_info_if_present(index)
        if info is None:
            continue  # deleted between the two requests
        tables[index] = _Table(info, calls.classify_sessions(index))
    pointed = {t.info.next_table for t in tables.values()}
    walks: list[list[int]] = []
    for head in sorted(i for i in tables if i not in pointed):
        walk, at = [], head
        while at in tables and at not in walk:
            walk.append(at)
            at = tables[at].info.next_table
        walks.append(walk)
    reached: dict[int, int] = {}
    for walk in walks:
        for index in walk:
            reached[index] = reached.get(index, 0) + 1
    found = []
    for walk in walks:
        if any(reached[i] > 1 for i in walk):
            continue  # shared with another chain: not provably ours
        chain = _ours([tables[i] for i in walk])
        if chain is not None:
            found.append(chain)
    if len(found) < len(walks):
        log.info("classifier: %d chain(s) not ours left alone", len(walks) - len(found))
    return found


def _ours(walk: list[_Table]) -> FoundChain | None:
    sessions = [s for t in walk for s in t.sessions]
    if not sessions or any(s.opaque != OUR_OPAQUE for s in sessions):
        return None
    if walk[-1].info.next_table != NO_INDEX or any(t.info.miss_next != PERMIT for t in walk):
        return None
    head_mask = walk[0].info.mask
    family = next((f for f, layout in LAYOUT.items() if len(head_mask) == layout[4] * 16), None)
    if family is None or any(len(t.info.mask) != len(head_mask) for t in walk):
        return None
    proto_at = LAYOUT[family][0]
    chain = FoundChain(family, [t.info.index for t in walk], {}, NO_INDEX, ())
    gaps: list[tuple[bytes, frozenset[bytes]]] = []
    for table in walk:
        drops = bool(table.sessions) and all(s.hit_next == DROP for s in table.sessions)
        if not gaps and not drops:  # admit tables come first
            if any(s.hit_next != PERMIT for s in table.sessions) or table.info.mask in chain.admit_tables:
                return None
            chain.admit_tables[table.info.mask] = table.info.index
            chain.sessions |= {(table.info.mask, s.match) for s in table.sessions}
        elif drops and table.info.mask[proto_at] == 0xFF:
            if not gaps:
                chain.gap_head = table.info.index
            gaps.append((table.info.mask, frozenset(s.match for s in table.sessions)))
        else:
            return None  # an admit table behind a gap table, or a gap table of another layout
    if not gaps or not chain.admit_tables:
        return None
    chain.gaps = tuple(gaps)
    return chain
