"""One classifier chain: its record (the tables and sessions it holds, head first) and the writes
that build it and change it in place. Which chain converges to which gate, who is on it and in
what order the writes come is chains.py's; the layouts are layout.py's.

A new mask shape gets a table made and filled first, then linked (a gap table at the end, an admit
table right behind the head, which stays: it is attached) by re-pointing its predecessor: VPP's
classify_add_del_table with is_add and an existing index changes only next_table_index. Tables
left with no session come out the same way and are deleted. A table made but not linked yet is
`loose` (a refused write leaves it so); chains.py deletes those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import SessionWrite
from vppagent.drivers.vpp.classifier.admits import Session
from vppagent.drivers.vpp.classifier.gate import Gate
from vppagent.drivers.vpp.classifier.layout import DROP, OUR_OPAQUE, PERMIT, mask_net, match_bytes, source_length


@dataclass
class Chain:
    family: int
    gate: Gate  # the gate it converges to
    tables: list[int]  # head first: admit tables, then gap tables
    masks: dict[int, bytes]  # table -> mask
    admit_tables: dict[bytes, int]  # mask -> table
    gap_tables: dict[bytes, int]
    sessions: set[Session] = field(default_factory=set)  # admit sessions held
    gaps: set[Session] = field(default_factory=set)  # gap sessions held

    @property
    def head(self) -> int:
        return self.tables[0]


class ChainWriter:
    """The writes that build a chain and change one in place: each step one pipeline, replies awaited."""

    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.loose: list[int] = []  # tables made but in no chain yet (a refused write)

    def build(self, gate: Gate, family: int, admits: set[Session], gaps: set[Session]) -> Chain:
        """A new chain holding `admits` and `gaps`, back to front (each table knows its next)."""
        by_admit, by_gap = _by_mask(admits), _by_mask(gaps)
        chain = Chain(family, gate, [], {}, {}, {})
        following = NO_INDEX
        layers = [(m, by_gap[m], True) for m in sorted(by_gap, reverse=True)]
        # The admit table covering the most addresses is the head, probed first: a member's packet
        # stops at the table that admits it, so most members (those in the coarse blocks of a run,
        # aggregate.py) pay one lookup instead of one per finer table before it.
        host = 32 if family == 4 else 128
        layers += [(m, by_admit.get(m, []), False) for m in (
            sorted(by_admit, key=lambda m: (len(by_admit[m]) << (host - source_length(family, m)), m))
            or [_first_mask(gate, family)])]
        for mask, matches, gap in layers:
            table = self._new_table(mask, following, len(matches) if gap else max(1024, 2 * len(matches)))
            self._sessions([(table, match) for match in matches], DROP if gap else PERMIT)
            (chain.gap_tables if gap else chain.admit_tables)[mask] = table
            (chain.gaps if gap else chain.sessions).update((mask, m) for m in matches)
            chain.tables.insert(0, table)
            chain.masks[table] = mask
            following = table
        self.loose = [t for t in self.loose if t not in chain.masks]
        return chain

    def _new_table(self, mask: bytes, following: int, entries: int) -> int:
        table = self.calls.classify_table_add(mask=mask, next_table=following, miss_next=PERMIT,
                                              nbuckets=max(2, 1 << max(entries - 1, 1).bit_length()),
                                              memory_size=max(1 << 20, entries * 64 * 16))
        self.loose.append(table)  # until it is linked into a chain
        return table

    def _repoint(self, chain: Chain, table: int, following: int) -> None:
        """VPP's classify_add_del_table with is_add and an existing index changes only its next table."""
        self.calls.classify_table_add(mask=chain.masks[table], next_table=following, miss_next=PERMIT, nbuckets=2,
                                      memory_size=1 << 20, index=table, what=f"classifier table {table} re-pointed")

    def _sessions(self, items: list[tuple[int, bytes]], hit: int, *, add: bool = True,
                  done: Callable[[int, bytes], None] | None = None) -> None:
        """One ordered step: the sessions (table, match) written in one pipeline, replies awaited;
        `done` is told of each one VPP did; then the first refusal, if any, is raised."""
        if not items:
            return
        outcomes = self.calls.batches.classify_sessions_write([SessionWrite(t, m, hit, OUR_OPAQUE, add)
                                                               for t, m in items])
        for (table, match), outcome in zip(items, outcomes, strict=True):
            if outcome is None and done is not None:
                done(table, match)
        refused = next((o for o in outcomes if o is not None), None)
        if refused is not None:
            raise refused

    def add(self, chain: Chain, sessions: set[Session], *, gap: bool) -> None:
        """Sessions added; a new mask gets a table, filled, then linked: a gap table at the end of
        the chain, an admit table right behind the head (the head stays: it is attached)."""
        tables, held, hit = _part(chain, gap)
        by_mask = _by_mask(sessions)
        masks = {table: mask for mask, table in tables.items()}
        self._sessions([(tables[mask], match) for mask, matches in sorted(by_mask.items()) if mask in tables
                        for match in matches], hit, done=lambda table, match: held.add((masks[table], match)))
        for mask, matches in sorted(by_mask.items()):
            if mask in tables:
                continue
            after = chain.tables[-1] if gap else chain.head
            following = NO_INDEX if gap else (chain.tables[1] if len(chain.tables) > 1 else NO_INDEX)
            table = self._new_table(mask, following, len(matches) if gap else max(1024, 2 * len(matches)))
            self._sessions([(table, match) for match in matches], hit)
            chain.masks[table] = mask
            self._repoint(chain, after, table)
            self.loose.remove(table)
            chain.tables.insert(len(chain.tables) if gap else 1, table)
            tables[mask] = table
            held.update((mask, m) for m in matches)

    def delete(self, chain: Chain, sessions: set[Session], *, gap: bool) -> None:
        tables, held, hit = _part(chain, gap)
        masks = {table: mask for mask, table in tables.items()}
        self._sessions([(tables[mask], match) for mask, match in sorted(sessions)], hit, add=False,
                       done=lambda table, match: held.discard((masks[table], match)))

    def drop_empty_tables(self, chain: Chain) -> None:
        """Tables with no session left (but the head) come out of the chain: each costs a lookup
        per packet, and read.py tells gap tables from admit tables by their sessions."""
        used = {mask for mask, _ in chain.sessions} | {mask for mask, _ in chain.gaps}
        for table in [t for t in chain.tables[1:] if chain.masks[t] not in used]:
            at = chain.tables.index(table)
            following = chain.tables[at + 1] if at + 1 < len(chain.tables) else NO_INDEX
            self._repoint(chain, chain.tables[at - 1], following)
            chain.tables.remove(table)
            mask = chain.masks.pop(table)
            for tables in (chain.admit_tables, chain.gap_tables):
                if tables.get(mask) == table:
                    del tables[mask]
            self.loose.append(table)
            self.calls.classify_table_del(table)
            self.loose.remove(table)


def _part(chain: Chain, gap: bool) -> tuple[dict[bytes, int], set[Session], int]:
    """The gap or the admit part of a chain: its tables by mask, its sessions, their hit action."""
    return (chain.gap_tables, chain.gaps, DROP) if gap else (chain.admit_tables, chain.sessions, PERMIT)


def _by_mask(sessions: Iterable[Session]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for mask, match in sorted(sessions):
        out[mask].append(match)
    return out


def _first_mask(gate: Gate, family: int) -> bytes:
    """The admit table a chain starts with when no member needs one yet (the head must exist
    before the chain is attached): a host member's shape in this family."""
    host = 32 if family == 4 else 128
    for gated in gate.sets:
        if family in gated.everywhere:
            return match_bytes(family, src=mask_net(family, host), full=True)
        for e in gated.admits:
            if e.family == family:
                return match_bytes(family, proto=1, src=mask_net(family, max(host, e.src.prefixlen)),
                                   dst=mask_net(family, e.dst.prefixlen), dport=e.dport_mask, full=True)
    return match_bytes(family, src=mask_net(family, host), full=True)
