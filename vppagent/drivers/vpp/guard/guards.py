"""Source guards per pod interface: built, kept current, attached, read back, deleted.

One chain per (pod interface, family), attached as the interface's input ACL classifier
(`input_acl_set_interface`): VPP runs it on the ip4-unicast / ip6-unicast arcs after the ACL
plugin's input node, so a pod's packet passes only if its egress ACL and its guard both let it.

    head: host-length table (/32 or /128): the pod's addresses -> permit; the unspecified address -> drop
      -> one table per other prefix length (allowed prefixes, fe80::/10) -> permit
      -> miss at the end -> drop

The head never moves once attached (VPP's add is a no-op while a table is attached): a table for a
new prefix length goes in behind it, and an emptied one is unlinked and deleted. Sessions for new
sources are added before those for old ones are deleted, and `prepare` runs before the ACLs change,
`finish` (detach and delete) after they narrowed, so no egress ACL is ever bound without its guard.

VPP keeps an interface's input-classifier record when the interface is deleted, and a new
interface given the same index inherits it with the feature off; an add then answers 0 and does
nothing (found on 26.06, docs/vpp-driver.md, "Source guard"). So a guard is detached before its
interface goes (`remove`), an attach first clears whatever VPP records there and checks the
record afterwards, and a guard held for an index whose interface is not the one it was attached to
(a new pod interface, or another tag or name there) is dropped and made anew (`forget`); a chain
read back is adopted only if its head carries the identity (tag and name) of the interface VPP
records it for (read.py). A guard that cannot be attached fails its endpoint, never silently opens
it. Left open: the same pod interface (same tag, same name) re-created at the same index by
someone other than the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.types import ClassifyTableAdd, InterfaceTable, SessionWrite
from vppagent.drivers.vpp.classifier.layout import DROP, PERMIT
from vppagent.drivers.vpp.guard.read import GuardChain, guard_chains, orphans
from vppagent.drivers.vpp.guard.sources import (
    GUARD_OPAQUE,
    HOST_LENGTH,
    UNSPECIFIED,
    GuardSources,
    by_length,
    guard_sources,
    identity_mark,
    mask_of,
    match_of,
    sources_key,
)
from vppagent.drivers.vpp.readback import ClassifierTables
from vppagent.policy.model import IPNetwork, WorkloadEndpoint

log = logging.getLogger(__name__)

FAMILIES = (4, 6)
TABLE_MEMORY = 1 << 16  # bytes per guard table: a handful of sessions (VPP grows a table's pages itself)
PLACEHOLDERS = 32  # tables made at most to get a freed index back (`_clear_record`)
SOURCES_MEMO = 1 << 16  # distinct address sets whose guard sources are kept between passes


class GuardError(RuntimeError):
    """A guard VPP accepted the requests for but does not hold as asked."""


def _buckets(sessions: int) -> int:
    return max(4, 1 << max(sessions - 1, 1).bit_length())


class SourceGuards:
    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.chains: dict[tuple[int, int], GuardChain] = {}  # (sw_if_index, family) -> attached chain
        self.identities: dict[int, int] = {}  # sw_if_index -> the identity mark its chains carry
        self.stale: list[int] = []  # tables of ours, attached nowhere: deleted in `finish`
        # Every pass asks for every endpoint's sources; working them out costs ~30 µs
        # (egress_sources collapses them), looking them up here ~1 µs.
        self._sources: dict[Hashable, GuardSources] = {}
        # (sw_if_index, family) -> the sources a guard gets once its pod's lists hold them (`widen`)
        self._widen: dict[tuple[int, int], frozenset[IPNetwork]] = {}

    # -- read back -------------------------------------------------------------------------------
    def reread(self, pod_interfaces: Mapping[int, tuple[str, str]], tables: ClassifierTables) -> None:
        """After a fresh read of VPP, the pod interfaces (sw_if_index -> (tag, name)): keep what this
        driver knows while every table of its chains is there and every guarded interface is still
        the same pod (a resync of an unchanged VPP then costs the table ids, not three reads per pod:
        14,000 reads and ~15 s at 2,000 pods); otherwise (VPP restarted, a new agent, an interface
        replaced) forget it and read the guards back from `tables`, which the gate's read-back
        shares (readback.py). Interfaces this driver does not guard yet need no read here: `ensure`
        checks VPP's record of an interface before attaching to it."""
        identities = {i: identity_mark(*names) for i, names in pod_interfaces.items()}
        if self.chains and self._still_held(identities, tables.ids()):
            self.identities.update(identities)
            return
        self.chains.clear()
        self.identities = identities
        known: set[int] = set()
        heads: list[tuple[int, int, int]] = []  # (sw_if_index, family, head)
        for sw_if_index, held in self._records(list(self.identities)).items():
            if isinstance(held, ApiRefused):
                raise held
            heads += [(sw_if_index, family, head) for family, head in held.items() if head != NO_INDEX]
        found = tables.tables()
        chains = guard_chains(found, [(family, head, self.identities[i]) for i, family, head in heads])
        for (sw_if_index, family, _), chain in zip(heads, chains, strict=True):
            if chain is not None:
                self.chains[(sw_if_index, family)] = chain
                known.update(chain.tables)
        self.stale = orphans(found, known)
        if self.stale:
            log.info("source guard: %d table(s) of ours attached nowhere, to be deleted", len(self.stale))

    def _still_held(self, identities: Mapping[int, int], present: AbstractSet[int]) -> bool:
        if any(identities.get(i) != self.identities.get(i) for i, _family in self.chains):
            return False
        return all(t in present for chain in self.chains.values() for t in chain.tables)

    # -- before the ACLs change ------------------------------------------------------------------
    def sources_of(self, ep: WorkloadEndpoint) -> GuardSources:
        key = sources_key(ep)
        found = self._sources.get(key)
        if found is None:
            if len(self._sources) >= SOURCES_MEMO:
                self._sources.clear()
            found = self._sources[key] = guard_sources(ep)
        return found

    def prepare(self, wanted: Mapping[int, WorkloadEndpoint], names: Mapping[int, tuple[str, str]]) -> dict[int, str]:
        """Before the ACLs change: every interface in `wanted` (its endpoint; its tag and name in
        `names`) guarded, by its endpoint's sources where it had no guard, else by the sources it
        keeps (leaving ones out now; new ones wait for `widen`); what failed, per interface.

        Why new sources wait: the pod's egress list is restricted to its sources (policy/reach.py),
        so until the list for the new sources is written, a packet from one meets a list whose
        rules for it were dropped (a "deny from X" before an "allow all" is gone): let through, it
        could pass what policy denies. Dropped meanwhile, it fails closed."""
        failed: dict[int, str] = {}
        self._widen.clear()
        new: list[_NewChain] = []
        for sw_if_index in sorted(wanted):
            try:
                new += self._keep(sw_if_index, names[sw_if_index], self.sources_of(wanted[sw_if_index]),
                                  widen_now=False)
            except (ApiRefused, GuardError) as exc:
                failed[sw_if_index] = f"source guard: {exc}"
        for sw_if_index, refusal in self._make(new).items():
            failed.setdefault(sw_if_index, f"source guard: {refusal}")
        for sw_if_index, reason in failed.items():
            log.warning("interface %d: %s", sw_if_index, reason)
        return failed

    def ensure(self, sw_if_index: int, names: tuple[str, str], sources: GuardSources, *,
               widen_now: bool = True) -> None:
        """The interface (tag, name) guarded by exactly `sources`; with `widen_now` False, an
        existing guard loses its leaving sources now and gains the new ones in `widen`."""
        failed = self._make(self._keep(sw_if_index, names, sources, widen_now=widen_now))
        if failed:
            raise failed[sw_if_index]

    def _keep(self, sw_if_index: int, names: tuple[str, str], sources: GuardSources, *,
              widen_now: bool) -> list[_NewChain]:
        """`ensure` for the guards the interface has (updated now); the ones to make (`_make`)."""
        identity = identity_mark(*names)
        if self.identities.setdefault(sw_if_index, identity) != identity:
            self.forget(sw_if_index)
            self.identities[sw_if_index] = identity
        new = []
        for family in FAMILIES:
            wanted = sources.get(family, frozenset())
            chain = self.chains.get((sw_if_index, family))
            if chain is None:
                new.append(_NewChain(sw_if_index, family, wanted, identity))
            elif chain.sources != wanted:
                if widen_now or wanted <= chain.sources:
                    self._update(chain, wanted)
                else:
                    self._update(chain, frozenset(chain.sources & wanted))
                    self._widen[(sw_if_index, family)] = wanted
        return new

    def widen(self, ready: AbstractSet[int]) -> dict[int, str]:
        """After the ACLs were written: the guards `prepare` kept narrow get their new sources, on
        the interfaces in `ready` (whose lists were written); the others stay narrow (closed) and
        are widened by a later pass. What failed, per interface (its guard stays narrow)."""
        failed: dict[int, str] = {}
        pending, self._widen = self._widen, {}
        for (sw_if_index, family), wanted in sorted(pending.items(), key=lambda item: item[0]):
            chain = self.chains.get((sw_if_index, family))
            if chain is None or sw_if_index not in ready:
                continue
            try:
                self._update(chain, wanted)
            except (ApiRefused, GuardError) as exc:
                log.warning("source guard on interface %d: %s", sw_if_index, exc)
                failed[sw_if_index] = f"source guard: {exc}"
        return failed

    def attach_new(self, sw_if_index: int, names: tuple[str, str], ep: WorkloadEndpoint | None) -> bool:
        """A pod interface just created (CNI Add): what was held or recorded for its index is not
        its guard (`forget`); with its endpoint (Felix has sent it) its guard is attached now,
        before its lists are bound. False (logged) when VPP refused."""
        try:
            self.forget(sw_if_index)
            if ep is not None:
                self.ensure(sw_if_index, names, self.sources_of(ep))
        except (ApiRefused, GuardError) as exc:
            log.warning("%s: source guard not attached, egress closed until it is: %s", names[0], exc)
            return False
        return True

    def forget(self, sw_if_index: int) -> None:
        """The interface at this index is not the one this driver guarded (that one was deleted by
        someone else): the record VPP keeps of an old table there is cleared now, while that table
        still exists to be named; the old chains' tables go in `finish`."""
        for family in FAMILIES:
            chain = self.chains.pop((sw_if_index, family), None)
            if chain is not None:
                self.stale += chain.tables
        self.identities.pop(sw_if_index, None)
        for family, recorded in self.calls.input_tables(sw_if_index).items():
            if recorded != NO_INDEX:
                self._clear_record(sw_if_index, family, recorded)

    def _clear_record(self, sw_if_index: int, family: int, recorded: int) -> bool:
        """Detach what VPP records as the interface's input classifier; True when it is cleared.
        VPP refuses to name a freed table (NO_SUCH_TABLE), and a record a deleted interface left
        may name one (its guard was deleted once it could not be detached): then tables are made
        until VPP hands that index out again (its pools reuse freed indices, last freed first),
        the record is cleared naming it, and they are deleted."""
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
            for table in made:
                self.calls.classify_table_del(table)

    # -- after the ACLs narrowed -----------------------------------------------------------------
    def finish(self, keep: AbstractSet[int]) -> None:
        """Guards of interfaces not in `keep` detached (one pipeline) and deleted; stale tables
        deleted (another: a detached chain is no one's, so the order of its deletes is free)."""
        self.remove_all(sorted({i for i, _ in self.chains} - set(keep)))
        doomed, self.stale = self.stale, []
        refusals = self.calls.batches.classify_tables_del(doomed) if doomed else []
        for table, refused in zip(doomed, refusals, strict=True):
            if refused is not None:
                log.warning("source guard table %d not deleted (retried): %s", table, refused)
                self.stale.append(table)

    def remove(self, sw_if_index: int) -> None:
        """Detach the interface's guards (before the interface is deleted) and delete their tables."""
        self.remove_all([sw_if_index])

    def remove_all(self, sw_if_indexes: list[int]) -> None:
        """`remove` for each: the detaches as one pipeline; the tables go with the stale ones in
        `finish`. A detach VPP refuses is logged (the tables still go: the interface is going)."""
        going: list[GuardChain] = []
        detaches: list[InterfaceTable] = []
        for sw_if_index in sw_if_indexes:
            self.identities.pop(sw_if_index, None)
            for family in FAMILIES:
                chain = self.chains.pop((sw_if_index, family), None)
                if chain is not None:
                    going.append(chain)
                    detaches.append(InterfaceTable(sw_if_index, family, chain.head, add=False,
                                                   what=f"source guard off interface {sw_if_index}"))
        refusals = self.calls.batches.input_tables_write(detaches) if detaches else []
        for detach, refused in zip(detaches, refusals, strict=True):
            if refused is not None and refused.retval != ApiError.NO_SUCH_TABLE:  # not attached: nothing to do
                log.warning("source guard on interface %d not detached: %s", detach.sw_if_index, refused)
        self.stale += [t for chain in going for t in chain.tables]  # once the detaches were answered

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

    def _make(self, new: list[_NewChain]) -> dict[int, ApiRefused | GuardError]:
        """New chains built and attached, many at once: their tables from each chain's back to its
        head (one pipeline per position: a table names the one behind it), every session (one
        pipeline: attached nowhere yet, their order does not matter), the head's drop mark last;
        VPP's records of the interfaces read (one pipeline), the heads attached (one), and the
        records read back (one). What failed, per interface (its first refusal); a chain that
        failed is not attached and its tables go in `finish`."""
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
        for i, n in enumerate(new):
            if i in broken:
                self.stale += chains[i].tables
                failed.setdefault(n.sw_if_index, broken[i])
            else:
                self.chains[(n.sw_if_index, n.family)] = chains[i]
        return failed

    def _attach(self, ready: list[int], new: list[_NewChain], chains: list[GuardChain],
                broken: dict[int, ApiRefused | GuardError]) -> None:
        """The heads of `ready` (positions in `new`) attached and checked; failures into `broken`."""
        recorded = self._records([new[i].sw_if_index for i in ready])
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
                if not self._clear_record(sw_if_index, family, held[family]):
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
        recorded = self._records([new[i].sw_if_index for i in attached])
        for i in attached:
            held, family = recorded[new[i].sw_if_index], new[i].family
            now = held if isinstance(held, ApiRefused) else held[family]
            if now != chains[i].head:
                broken[i] = GuardError(f"interface {new[i].sw_if_index}: IPv{family} guard {chains[i].head} not "
                                       f"attached (VPP records {'none' if now == NO_INDEX else now})")

    def _records(self, sw_if_indexes: list[int]) -> dict[int, dict[int, int] | ApiRefused]:
        """VPP's record of each interface's input classifier per family (one pipeline)."""
        unique = sorted(set(sw_if_indexes))
        return dict(zip(unique, self.calls.batches.input_tables_of(unique), strict=True))

    def _update(self, chain: GuardChain, wanted: frozenset[IPNetwork]) -> None:
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


@dataclass(frozen=True)
class _NewChain:
    """A guard to make: the interface, the family, its sources, the identity its head carries."""

    sw_if_index: int
    family: int
    sources: frozenset[IPNetwork]
    identity: int


def _table_add(family: int, length: int, next_table: int, sessions: int) -> ClassifyTableAdd:
    return ClassifyTableAdd(mask_of(family, length), next_table, DROP, _buckets(sessions), TABLE_MEMORY,
                            what=f"source guard table /{length}")
