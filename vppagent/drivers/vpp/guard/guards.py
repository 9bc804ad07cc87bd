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

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.types import InterfaceTable
from vppagent.drivers.vpp.guard.read import GuardChain, guard_chains, orphans
from vppagent.drivers.vpp.guard.sources import (
    GuardSources,
    guard_sources,
    identity_mark,
    sources_key,
)
from vppagent.drivers.vpp.guard.writer import GuardError, GuardWriter, NewChain
from vppagent.drivers.vpp.readback import ClassifierTables
from vppagent.policy.model import IPNetwork, WorkloadEndpoint

log = logging.getLogger(__name__)

FAMILIES = (4, 6)
SOURCES_MEMO = 1 << 16  # distinct address sets whose guard sources are kept between passes


class SourceGuards:
    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.writer = GuardWriter(calls)  # the writes (writer.py); its `stale` tables go in `finish`
        self.chains: dict[tuple[int, int], GuardChain] = {}  # (sw_if_index, family) -> attached chain
        self.identities: dict[int, int] = {}  # sw_if_index -> the identity mark its chains carry
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
        for sw_if_index, held in self.writer.records(list(self.identities)).items():
            if isinstance(held, ApiRefused):
                raise held
            heads += [(sw_if_index, family, head) for family, head in held.items() if head != NO_INDEX]
        found = tables.tables()
        chains = guard_chains(found, [(family, head, self.identities[i]) for i, family, head in heads])
        for (sw_if_index, family, _), chain in zip(heads, chains, strict=True):
            if chain is not None:
                self.chains[(sw_if_index, family)] = chain
                known.update(chain.tables)
        self.writer.stale = orphans(found, known)
        if self.writer.stale:
            log.info("source guard: %d table(s) of ours attached nowhere, to be deleted", len(self.writer.stale))

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
        new: list[NewChain] = []
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
              widen_now: bool) -> list[NewChain]:
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
                new.append(NewChain(sw_if_index, family, wanted, identity))
            elif chain.sources != wanted:
                if widen_now or wanted <= chain.sources:
                    self.writer.update(chain, wanted)
                else:
                    self.writer.update(chain, frozenset(chain.sources & wanted))
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
                self.writer.update(chain, wanted)
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
                self.writer.stale += chain.tables
        self.identities.pop(sw_if_index, None)
        for family, recorded in self.calls.input_tables(sw_if_index).items():
            if recorded != NO_INDEX:
                self.writer.clear_record(sw_if_index, family, recorded)

    def _make(self, new: list[NewChain]) -> dict[int, ApiRefused | GuardError]:
        """New chains built and attached (writer.py `make`) and held; what failed, per interface."""
        made, failed = self.writer.make(new)
        for n, chain in made:
            self.chains[(n.sw_if_index, n.family)] = chain
        return failed

    # -- after the ACLs narrowed -----------------------------------------------------------------
    def finish(self, keep: AbstractSet[int]) -> None:
        """Guards of interfaces not in `keep` detached (one pipeline) and deleted; stale tables
        deleted (another: a detached chain is no one's, so the order of its deletes is free)."""
        self.remove_all(sorted({i for i, _ in self.chains} - set(keep)))
        doomed, self.writer.stale = self.writer.stale, []
        refusals = self.calls.batches.classify_tables_del(doomed) if doomed else []
        for table, refused in zip(doomed, refusals, strict=True):
            if refused is not None:
                log.warning("source guard table %d not deleted (retried): %s", table, refused)
                self.writer.stale.append(table)

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
        self.writer.stale += [t for chain in going for t in chain.tables]  # once the detaches were answered

