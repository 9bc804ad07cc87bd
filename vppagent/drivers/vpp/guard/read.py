"""Guard chains read back from VPP (after a restart of the agent, or of VPP), and ours told apart.

A chain is read from the table VPP records as a pod interface's input classifier
(`classify_table_by_interface`) and is ours when, walked to its end:
- every table has a guard mask of that family (sources.py: the source only, under a prefix
  mask), a length no other table of the chain has, and misses to drop;
- every session carries GUARD_OPAQUE and hits permit, but the head's drop session for the
  unspecified address (the mark every guard chain holds, sources.py);
- the head is the host-length table and holds that drop session, and its opaque is the identity
  of the interface it is read for (its tag and name): a chain recorded for a deleted interface is
  not the guard of a new one given the same index.
Anything else is not ours: `read_chains` answers None, and guards.py detaches it only to attach a
guard there (a pod interface's input classifier is the guard's).
Tables of ours attached to no pod interface (`orphans`) are a previous agent's, left by a pod
whose interface went while nobody watched: they are deleted. The gate's tables (classifier/read.py)
all miss to permit and carry the gate's mark: neither side reads the other's as its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import ClassifySession
from vppagent.drivers.vpp.classifier.layout import DROP, PERMIT
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


def read_chains(calls: VppCalls, starts: Sequence[tuple[int, int, int]], present: AbstractSet[int]
                ) -> list[GuardChain | None]:
    """The guard chain starting at each `head` on the interface whose identity mark is `identity`,
    or None when it is not (wholly) ours, or not that interface's. `present`: the tables VPP has
    (a record may name a freed one, which is not asked about: batches.classify_table_infos_if_present).
    The chains are walked side by side: each step reads the current table of every chain still
    walked (one pipeline), then their sessions (another)."""
    walks = [_Walk(GuardChain(family, [], {}), head, identity) for family, head, identity in starts]
    while walking := [w for w in walks if w.ok and w.at != NO_INDEX]:
        for w in walking:
            if w.at in w.chain.lengths or w.at not in present:
                w.ok = False  # a loop, or a table that is gone
        walking = [w for w in walking if w.ok]
        infos = calls.batches.classify_table_infos_if_present([w.at for w in walking])
        for w, info in zip(walking, infos, strict=True):
            length = None if info is None or info.miss_next != DROP else length_of(w.chain.family, info.mask)
            if info is None or length is None or length in w.chain.lengths.values():
                w.ok = False
                continue
            w.chain.tables.append(w.at)
            w.chain.lengths[w.at] = length
            w.next = info.next_table
        walking = [w for w in walking if w.ok]
        for w, sessions in zip(walking, calls.batches.classify_sessions_of([w.at for w in walking]), strict=True):
            w.take(sessions)
            w.at = w.next
    return [w.chain if w.ok and w.marked and w.chain.lengths[w.head] == HOST_LENGTH[w.chain.family] else None
            for w in walks]


@dataclass
class _Walk:
    """One chain being read: where it is, and what was found."""

    chain: GuardChain
    head: int
    identity: int
    at: int = -1
    next: int = NO_INDEX
    ok: bool = True
    marked: bool = False

    def __post_init__(self) -> None:
        self.at = self.head

    def take(self, sessions: list[ClassifySession]) -> None:
        """The sessions of the table at `at`: guard permits, and the head's drop mark."""
        family, length = self.chain.family, self.chain.lengths[self.at]
        for session in sessions:
            if _is_mark(family, length, session):
                if self.at != self.head or session.opaque != self.identity:
                    self.ok = False
                    return
                self.marked = True
            elif session.opaque != GUARD_OPAQUE or session.hit_next != PERMIT:
                self.ok = False
                return
            else:
                self.chain.sources.add(source_of(family, length, session.match))


def orphans(calls: VppCalls, known: AbstractSet[int], present: AbstractSet[int]) -> list[int]:
    """Guard tables of ours among `present` (the tables VPP has) that are in no chain in `known`
    (tables read as attached guards)."""
    unknown = sorted(present - known)
    infos = calls.batches.classify_table_infos_if_present(unknown)
    candidates = [index for index, info in zip(unknown, infos, strict=True)
                  if info is not None and info.miss_next == DROP
                  and any(length_of(f, info.mask) is not None for f in (4, 6))]
    return [index for index, sessions in zip(candidates, calls.batches.classify_sessions_of(candidates), strict=True)
            if sessions and all(s.opaque == GUARD_OPAQUE or is_identity_mark(s.opaque) for s in sessions)]


def _is_mark(family: int, length: int, session: ClassifySession) -> bool:
    return length == HOST_LENGTH[family] and session.hit_next == DROP and session.match == match_of(UNSPECIFIED[family])
