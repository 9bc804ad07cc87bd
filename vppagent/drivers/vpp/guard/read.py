"""Guard chains among VPP's classifier tables as read back (readback.py), and ours told apart. Pure.

A chain starts at the table VPP records as a pod interface's input classifier
(`classify_table_by_interface`, read by guards.py) and is ours when, walked to its end:
- every table has a guard mask of that family (sources.py: the source only, under a prefix
  mask), a length no other table of the chain has, and misses to drop;
- every session carries GUARD_OPAQUE and hits permit, but the head's drop session for the
  unspecified address (the mark every guard chain holds, sources.py);
- the head is the host-length table and holds that drop session, and its opaque is the identity
  of the interface it is read for (its tag and name): a chain recorded for a deleted interface is
  not the guard of a new one given the same index.
Anything else is not ours: `guard_chains` answers None, and guards.py detaches it only to attach a
guard there (a pod interface's input classifier is the guard's).
Tables of ours attached to no pod interface (`orphans`) are a previous agent's, left by a pod
whose interface went while nobody watched: they are deleted. The gate's tables (classifier/read.py)
all miss to permit and carry the gate's mark: neither side reads the other's as its own. Both read
from the same tables (readback.py): a restart reads each table once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import ClassifySession
from vppagent.drivers.vpp.classifier.layout import DROP, PERMIT
from vppagent.drivers.vpp.classifier.read import HeldTable
from vppagent.drivers.vpp.guard.sources import (
    GUARD_OPAQUE,
    HOST_LENGTH,
    UNSPECIFIED,
    is_identity_mark,
    length_of,
    match_of,
    source_of,
)
from vppagent.policy.model import IPNetwork


@dataclass
class GuardChain:
    """One interface's guard in one family, as VPP holds it."""

    family: int
    tables: list[int]  # head first, in chain order
    lengths: dict[int, int]  # table -> the prefix length it matches
    sources: set[IPNetwork] = field(default_factory=set)  # permit sessions held

    @property
    def head(self) -> int:
        return self.tables[0]

    def table_for(self, length: int) -> int | None:
        return next((t for t, n in self.lengths.items() if n == length), None)


def guard_chains(tables: Mapping[int, HeldTable], starts: Sequence[tuple[int, int, int]]
                 ) -> list[GuardChain | None]:
    """For each (family, head, identity): the guard chain starting at `head` on the interface whose
    identity mark is `identity`, or None when it is not (wholly) ours, or not that interface's.
    `tables`: what VPP holds (a record may name a freed table, which is then not among them)."""
    return [_chain(tables, family, head, identity) for family, head, identity in starts]


def _chain(tables: Mapping[int, HeldTable], family: int, head: int, identity: int) -> GuardChain | None:
    chain = GuardChain(family, [], {})
    marked = False
    at = head
    while at != NO_INDEX:
        held = tables.get(at)
        if held is None or at in chain.lengths:
            return None  # a table that is gone, or a loop
        length = length_of(family, held.info.mask) if held.info.miss_next == DROP else None
        if length is None or length in chain.lengths.values():
            return None
        chain.tables.append(at)
        chain.lengths[at] = length
        for session in held.sessions:
            if _is_mark(family, length, session):
                if at != head or session.opaque != identity:
                    return None
                marked = True
            elif session.opaque != GUARD_OPAQUE or session.hit_next != PERMIT:
                return None
            else:
                chain.sources.add(source_of(family, length, session.match))
        at = held.info.next_table
    return chain if marked and chain.lengths[head] == HOST_LENGTH[family] else None


def orphans(tables: Mapping[int, HeldTable], known: AbstractSet[int]) -> list[int]:
    """Guard tables of ours among `tables` that are in no chain in `known` (tables read as
    attached guards)."""
    return [index for index, held in sorted(tables.items())
            if index not in known and held.info.miss_next == DROP
            and any(length_of(f, held.info.mask) is not None for f in (4, 6))
            and held.sessions and all(s.opaque == GUARD_OPAQUE or is_identity_mark(s.opaque) for s in held.sessions)]


def _is_mark(family: int, length: int, session: ClassifySession) -> bool:
    return length == HOST_LENGTH[family] and session.hit_next == DROP and session.match == match_of(UNSPECIFIED[family])
