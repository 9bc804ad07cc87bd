"""The writes that build source guards, attach them and change them in place (guards.py decides
which, and when). See guards.py for the shape of a chain and why its head never moves.

VPP keeps an interface's input-classifier record when the interface is deleted, and a new
interface given the same index inherits it with the feature off; an add then answers 0 and does
nothing (found on 26.06, docs/vpp-driver.md, "Source guard"). So an attach first clears whatever
VPP records there (`clear_record`) and reads the record back afterwards; a record naming a freed
table is cleared by getting that index back from VPP's pool.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import ClassifyTableAdd, InterfaceTable, SessionWrite
from vppagent.drivers.vpp.classifier.layout import DROP, PERMIT
from vppagent.drivers.vpp.guard.read import GuardChain
from vppagent.drivers.vpp.guard.sources import GUARD_OPAQUE, HOST_LENGTH, UNSPECIFIED, by_length, mask_of, match_of
from vppagent.policy.model import IPNetwork

log = logging.getLogger(__name__)

TABLE_MEMORY = 1 << 16  # bytes per guard table: a handful of sessions (VPP grows a table's pages itself)
PLACEHOLDERS = 32  # tables made at most to get a freed index back (`clear_record`)


class GuardError(RuntimeError):
    """A guard VPP accepted the requests for but does not hold as asked."""


def _buckets(sessions: int) -> int:
    return max(4, 1 << max(sessions - 1, 1).bit_length())


@dataclass(frozen=True)
class NewChain:
    """A guard to make: the interface, the family, its sources, the identity its head carries."""

    sw_if_index: int
    family: int
    sources: frozenset[IPNetwork]
    identity: int


class GuardWriter:
    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.stale: list[int] = []  # tables of ours, attached nowhere: deleted in guards.py `finish`

    def clear_record(self, sw_if_index: int, family: int, recorded: int) -> bool:
        """Detach what VPP records as the interface's input classifier; True when it is cleared.
        VPP refuses to name a freed table (NO_SUCH_TABLE), and a record a deleted interface left
        may name one (its guard was deleted once it could not be detached): then tables are made
        until VPP hands that index out again (its pools reuse freed indices, last freed first),
        the record is cleared naming it, and they are deleted (one pipeline)."""
        what = f"input classifier {recorded} off interface {sw_if_index}"
        if self.calls.input_table(sw_if_index, family, recorded, add=False, not_attached_ok=True, what=what):
            return True
        made: list[int] = []
        try:
            while len(made) < PLACEHOLDERS and recorded not in made:
                made.append(self._table(family, HOST_LENGTH[family], NO_INDEX, 1))
            return recorded in made and self.calls.input_table(sw_if_index, family, recorded, add=False,
                                                               not_attached_ok=True, what=what)
        finally:
            refusals = [r for r in self.calls.batches.classify_tables_del(made) if r is not None] if made else []
            if refusals:
                raise refusals[0]

    # -- building --------------------------------------------------------------------------------
    def _table(self, family: int, length: int, next_table: int, sessions: int, index: int = NO_INDEX) -> int:
        return self.calls.classify_table_add(mask=mask_of(family, length), next_table=next_table, miss_next=DROP,
                                             nbuckets=_buckets(sessions), memory_size=TABLE_MEMORY, index=index,
                                             what=f"source guard table /{length}")

    def _write_sessions(self, chain: GuardChain, writes: list[tuple[SessionWrite, IPNetwork | None]]) -> None:
        """One pipeline; `chain.sources` follows what VPP did (a source whose session was written
        added, or removed); then the first refusal, if any, is raised."""
        refusals = []
        for (write, net), refused in zip(writes, self.calls.batches.classify_sessions_write([w for w, _ in writes]),
                                         strict=True):
            if refused is not None:
                refusals.append(refused)
            elif net is not None:
                (chain.sources.add if write.add else chain.sources.discard)(net)
        if refusals:
            raise refusals[0]

    def make(self, new: list[NewChain]) -> tuple[list[tuple[NewChain, GuardChain]],
                                               dict[int, ApiRefused | GuardError]]:
        """New chains built and attached, many at once: their tables from each chain's back to its
        head (one pipeline per position: a table names the one behind it), every session (one
        pipeline: attached nowhere yet, their order does not matter), the head's drop mark last;
        VPP's records of the interfaces read (one pipeline), the heads attached (one), and the
        records read back (one). What failed, per interface (its first refusal), beside the chains
        made; a chain that failed is not attached and its tables are stale."""
        chains = [GuardChain(n.family, [], {}) for n in new]
        layouts = [by_length(n.family, n.sources) for n in new]
        broken: dict[int, ApiRefused | GuardError] = {}  # position in `new` -> why
        try:
            for position in range(max((len(layout) for layout in layouts), default=0)):
                batch = [(i, sorted(layouts[i])[position]) for i in range(len(new))
                         if position < len(layouts[i]) and i not in broken]
                made = self.calls.batches.classify_tables_add([
                    _table_add(new[i].family, length, chains[i].tables[0] if chains[i].tables else NO_INDEX,
                               len(layouts[i][length]) + 1) for i, length in batch])
                for (i, length), table in zip(batch, made, strict=True):
                    if isinstance(table, ApiRefused):
                        broken[i] = table
                    else:
                        chains[i].tables.insert(0, table)
                        chains[i].lengths[table] = length
            writes: list[tuple[int, SessionWrite, IPNetwork | None]] = []
            for i, n in enumerate(new):
                if i not in broken:
                    writes += [(i, _permit(_table_of(chains[i], net), net), net)
                               for length in sorted(layouts[i]) for net in sorted(layouts[i][length], key=str)]
                    writes.append((i, SessionWrite(chains[i].head, match_of(UNSPECIFIED[n.family]), DROP, n.identity),
                                   None))
            outcomes = self.calls.batches.classify_sessions_write([w for _, w, _ in writes])
            for (i, _, net), refused in zip(writes, outcomes, strict=True):
                if refused is not None:
                    broken.setdefault(i, refused)
                elif net is not None:
                    chains[i].sources.add(net)
            self._attach([i for i in range(len(new)) if i not in broken], new, chains, broken)
        except BaseException:
            self.stale += [t for chain in chains for t in chain.tables]
            raise
        failed: dict[int, ApiRefused | GuardError] = {}
        held: list[tuple[NewChain, GuardChain]] = []
        for i, n in enumerate(new):
            if i in broken:
                self.stale += chains[i].tables
                failed.setdefault(n.sw_if_index, broken[i])
            else:
                held.append((n, chains[i]))
        return held, failed

    def _attach(self, ready: list[int], new: list[NewChain], chains: list[GuardChain],
                broken: dict[int, ApiRefused | GuardError]) -> None:
        """The heads of `ready` (positions in `new`) attached and checked; failures into `broken`."""
        recorded = self.records([new[i].sw_if_index for i in ready])
        attach = []
        for i in ready:
            sw_if_index, family = new[i].sw_if_index, new[i].family
            held = recorded[sw_if_index]
            if isinstance(held, ApiRefused):
                broken[i] = held
                continue
            if held[family] != NO_INDEX:
                # Not a guard this driver holds: another input classifier, or the record a deleted
                # interface with this index left (then the feature is off and an add would do nothing).
                log.warning("interface %d: input classifier table %d replaced by the source guard", sw_if_index,
                            held[family])
                if not self.clear_record(sw_if_index, family, held[family]):
                    broken[i] = GuardError(
                        f"interface {sw_if_index}: VPP records input classifier table {held[family]}, which it no "
                        f"longer has (left by a deleted interface with this index) and did not hand out again in "
                        f"{PLACEHOLDERS} new tables, so no guard can be attached; re-create the pod")
                    continue
            attach.append(i)
        outcomes = self.calls.batches.input_tables_write([InterfaceTable(
            new[i].sw_if_index, new[i].family, chains[i].head, what=f"source guard on interface {new[i].sw_if_index}")
            for i in attach])
        for i, refused in zip(attach, outcomes, strict=True):
            if refused is not None:
                broken[i] = refused
        attached = [i for i in attach if i not in broken]
        recorded = self.records([new[i].sw_if_index for i in attached])
        for i in attached:
            held, family = recorded[new[i].sw_if_index], new[i].family
            now = held if isinstance(held, ApiRefused) else held[family]
            if now != chains[i].head:
                broken[i] = GuardError(f"interface {new[i].sw_if_index}: IPv{family} guard {chains[i].head} not "
                                       f"attached (VPP records {'none' if now == NO_INDEX else now})")

    def records(self, sw_if_indexes: list[int]) -> dict[int, dict[int, int] | ApiRefused]:
        """VPP's record of each interface's input classifier per family (one pipeline)."""
        unique = sorted(set(sw_if_indexes))
        return dict(zip(unique, self.calls.batches.input_tables_of(unique), strict=True))

    def update(self, chain: GuardChain, wanted: frozenset[IPNetwork]) -> None:
        """New sources first (one pipeline, answered), then old ones out (another); a table for a new
        length goes in behind the head before them (empty, it matches nothing: a miss goes on down the
        chain as before), an emptied one (never the head) is unlinked, then deleted."""
        family = chain.family
        new = sorted(wanted - chain.sources, key=lambda n: (-n.prefixlen, str(n)))
        for length in dict.fromkeys(n.prefixlen for n in new):  # longest first, as they come
            if chain.table_for(length) is None:
                self._insert(chain, length, sum(1 for n in wanted if n.prefixlen == length))
        self._write_sessions(chain, [(_permit(_table_of(chain, n), n), n) for n in new])
        self._write_sessions(chain, [(_permit(_table_of(chain, n), n, add=False), n)
                                     for n in sorted(chain.sources - wanted, key=str)])
        used = {n.prefixlen for n in chain.sources} | {HOST_LENGTH[family]}
        for table in [t for t in chain.tables[1:] if chain.lengths[t] not in used]:
            at = chain.tables.index(table)
            after = chain.tables[at + 1] if at + 1 < len(chain.tables) else NO_INDEX
            before = chain.tables[at - 1]
            self._table(family, chain.lengths[before], after, 1, index=before)  # re-pointed past `table`
            chain.tables.remove(table)
            del chain.lengths[table]
            self.stale.append(table)

    def _insert(self, chain: GuardChain, length: int, sessions: int) -> int:
        """A table for `length` linked in right behind the head (its sessions come after: until
        then it matches nothing, and a miss goes on down the chain as before)."""
        after = chain.tables[1] if len(chain.tables) > 1 else NO_INDEX
        table = self._table(chain.family, length, after, sessions)
        self._table(chain.family, HOST_LENGTH[chain.family], table, 1, index=chain.head)
        chain.tables.insert(1, table)
        chain.lengths[table] = length
        return table



def _permit(table: int, net: IPNetwork, *, add: bool = True) -> SessionWrite:
    return SessionWrite(table, match_of(net), PERMIT, GUARD_OPAQUE, add=add)


def _table_of(chain: GuardChain, net: IPNetwork) -> int:
    table = chain.table_for(net.prefixlen)
    assert table is not None, f"no table for /{net.prefixlen} in the chain"
    return table


def _table_add(family: int, length: int, next_table: int, sessions: int) -> ClassifyTableAdd:
    return ClassifyTableAdd(mask_of(family, length), next_table, DROP, _buckets(sessions), TABLE_MEMORY,
                            what=f"source guard table /{length}")
