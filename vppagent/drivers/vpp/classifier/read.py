"""Reading classifier chains back from VPP, and telling ours from anyone else's.

Every session the driver adds carries `OUR_OPAQUE` (layout.py). A chain is ours when, walked from
a head (a table no other table points to):
- it holds at least one session, and every session in it carries OUR_OPAQUE;
- its tables are admit tables (every session hits permit; a table may be empty) followed by gap
  tables (protocol always masked, every session hits drop; the first holds at least one, a later
  one may be empty: a gap change stopped between its last session's delete and the table's),
  all of one family's layout, and its end misses to permit; at least one of each;
- a table also reached from another head is allowed only when that walk holds nothing but our
  sessions too: a new table whose linking VPP refused points where the head it was to follow
  points (chains.py `_add`). Each such walk is read as a chain of its own; adoption takes at most
  one of them and deletes the others' tables but the shared ones (chains.py).
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

Session = tuple[bytes, bytes]  # (table mask, match)


@dataclass
class FoundChain:
    """One chain of ours as VPP holds it. Its identity is its content (admit and gap sessions),
    whatever order its tables are in."""

    family: int
    tables: list[int]  # head first
    masks: dict[int, bytes]  # table index -> mask
    admit_tables: dict[bytes, int]  # mask -> table index
    gap_tables: dict[bytes, int] = field(default_factory=dict)
    sessions: set[Session] = field(default_factory=set)  # admit sessions
    gaps: set[Session] = field(default_factory=set)  # gap sessions

    @property
    def head(self) -> int:
        return self.tables[0]


@dataclass
class HeldTable:
    """One classifier table as read from VPP: its info and its sessions."""

    info: ClassifyTableInfo
    sessions: list[ClassifySession]


def read_chains(calls: VppCalls) -> list[FoundChain]:
    """Our chains in VPP (reads only)."""
    return chains_in(read_tables(calls))


def read_tables(calls: VppCalls) -> dict[int, HeldTable]:
    """Every classifier table VPP holds: the table ids, then every table's info as one pipeline,
    then the sessions of those still there as another (12,000 tables in P1: two round trips per
    table when read one request at a time). A table deleted after the ids were read is left out
    (its info is refused as not found), or, gone between its info and its sessions, reads as
    holding none; a refusal of any other kind raises (ApiRefused)."""
    ids = calls.classify_table_ids()
    if not ids:
        return {}
    infos = {index: info for index, info in zip(ids, calls.batches.classify_table_infos_if_present(ids), strict=True)
             if info is not None}
    return {index: HeldTable(info, sessions) for (index, info), sessions
            in zip(infos.items(), calls.batches.classify_sessions_of(list(infos)), strict=True)}


def chains_in(tables: dict[int, HeldTable]) -> list[FoundChain]:
    """Our chains among `tables` (pure: the rules of the module docstring)."""
    pointed = {t.info.next_table for t in tables.values()}
    walks: list[list[int]] = []
    for head in sorted(i for i in tables if i not in pointed):
        walk, at = [], head
        while at in tables and at not in walk:
            walk.append(at)
            at = tables[at].info.next_table
        walks.append(walk)
    # the walks through each table: a walk's sharers found per table, not by pairs of walks (4,000
    # walks in P1, the source guards' included: 13 s by pairs)
    through: dict[int, list[int]] = {}
    for n, walk in enumerate(walks):
        for i in walk:
            through.setdefault(i, []).append(n)
    found = []
    for n, walk in enumerate(walks):
        sharing = [walks[m] for m in sorted({m for i in walk for m in through[i]} - {n})]
        if any(s.opaque != OUR_OPAQUE for w in sharing for i in w for s in tables[i].sessions):
            continue  # shared with another head's chain that is not all ours: not provably ours
        chain = _ours([tables[i] for i in walk])
        if chain is not None:
            found.append(chain)
    if len(found) < len(walks):
        log.info("classifier: %d chain(s) not ours left alone", len(walks) - len(found))
    return found


def _ours(walk: list[HeldTable]) -> FoundChain | None:
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
    chain = FoundChain(family, [t.info.index for t in walk], {t.info.index: t.info.mask for t in walk}, {})
    for table in walk:
        mask = table.info.mask
        drops = all(s.hit_next == DROP for s in table.sessions)
        if not chain.gap_tables and not (drops and table.sessions):  # admit tables come first
            if any(s.hit_next != PERMIT for s in table.sessions) or mask in chain.admit_tables:
                return None
            chain.admit_tables[mask] = table.info.index
            chain.sessions |= {(mask, s.match) for s in table.sessions}
        elif drops and mask[proto_at] == 0xFF and mask not in chain.gap_tables:
            chain.gap_tables[mask] = table.info.index
            chain.gaps |= {(mask, s.match) for s in table.sessions}
        else:
            return None  # an admit table behind a gap table, or a gap table of another layout
    if not chain.gap_tables or not chain.admit_tables:
        return None
    return chain
