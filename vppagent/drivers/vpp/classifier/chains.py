"""Classifier chains for gated lists (gate.py): building them, keeping their members current,
attaching them, adopting ours after a restart, deleting stale ones.

One chain per (gate, family), shared by every interface whose ingress list has that gate:

    admit tables (one per mask shape; hit -> permit)
      -> gap tables (one per mask shape; hit -> drop)
      -> miss -> permit

An admit session is a member of a gated set (its source prefix), alone or with one entry of the
set's admit region (admits.py). `prepare` (before the ACLs widen to L_U): chains exist with
current members (session adds and deletes for the members that changed) and are attached as the
output ACL of their interfaces. `finish`
(after the ACLs narrowed): chains no interface needs are detached and deleted. After a read-back
(read.py) `prepare` first adopts, per (gate, family), the chain of ours whose gap tables hold
exactly the gate's gaps, infers output attachments from the bound ACLs, and detaches stale chains
of ours; the rules and why they are safe: docs/vpp-driver.md, "Restarts and adoption".
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.classifier.admits import Session, member_sessions, members
from vppagent.drivers.vpp.classifier.gate import GapEntry, Gate, GatedSet
from vppagent.drivers.vpp.classifier.layout import DROP, OUR_OPAQUE, PERMIT, mask_net, match_bytes
from vppagent.drivers.vpp.classifier.read import FoundChain, GapSignature, read_chains
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)

ChainKey = tuple[Gate, int]


@dataclass
class Chain:
    family: int
    head: int
    admit_tables: dict[bytes, int]  # mask -> table index (the chain's first tables)
    gap_head: int
    tables: list[int]
    sessions: set[Session] = field(default_factory=set)  # admit sessions held


class ClassifierChains:
    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.chains: dict[ChainKey, Chain] = {}
        self.attached: dict[int, dict[int, int]] = {}  # sw_if_index -> {family: head} (output)
        self.gate_of: dict[int, Gate] = {}  # sw_if_index -> the gate attached there
        self.found: list[FoundChain] | None = None  # read back from VPP, adopted by the next prepare
        self.stale: list[Chain | FoundChain] = []  # ours, adopted by nobody: detached, deleted in finish
        # per (gated set, family): the members' object last seen, and each member's admit sessions
        self._wanted_memo: dict[tuple[GatedSet, int], tuple[object, dict[str, frozenset[Session]]]] = {}
        self._read_since_connect = False

    def connected(self) -> None:
        """A new connection to VPP: the next `reread` reads our chains back even if we know none."""
        self._read_since_connect = False

    def reread(self) -> None:
        """After a fresh read of VPP: keep what this driver knows while its tables are all there;
        otherwise (VPP restarted, or a new driver) read our chains back for `prepare` to adopt.
        A driver that knows no chain and has read back since it connected reads nothing: every
        table VPP lists would be read (the source guards' too: three per pod) on every resync."""
        if self.chains:
            present = set(self.calls.classify_table_ids())
            if all(t in present for c in self.chains.values() for t in c.tables):
                return
            log.info("classifier tables gone (VPP restarted): reading back what is left")
        elif self._read_since_connect:
            return
        self.chains.clear()
        self.attached.clear()
        self.gate_of.clear()
        self.found = read_chains(self.calls)
        self._read_since_connect = True

    # -- before the ACLs widen ---------------------------------------------------------------------
    def prepare(self, gates: Mapping[int, Gate], state: DataplaneState, *, settled: AbstractSet[int] = frozenset(),
                candidates: AbstractSet[int] = frozenset()) -> None:
        """Chains exist with current members; interfaces with a gate are attached. `settled`:
        interfaces whose bound output ACL already has the desired content; `candidates`: every
        interface a chain of ours may be attached to (both matter only after a read-back)."""
        if self.found is not None:
            found, self.found = self.found, None
            self._adopt(found, gates, state, settled, candidates | set(gates))
        for gate in sorted(set(gates.values()), key=_gate_order):
            for family in gate.families():
                key = (gate, family)
                wanted = self._wanted(state, key)
                if key not in self.chains:
                    self.chains[key] = self._build(gate, family, wanted)
                self._sync_sessions(key, wanted)
        for sw_if_index, gate in gates.items():
            heads = {f: self.chains[(gate, f)].head for f in gate.families()}
            self._attach(sw_if_index, heads)
            self.gate_of[sw_if_index] = gate

    def _adopt(self, found: list[FoundChain], gates: Mapping[int, Gate], state: DataplaneState,
               settled: AbstractSet[int], candidates: AbstractSet[int]) -> None:
        for gate in sorted(set(gates.values()), key=_gate_order):
            for family in gate.families():
                signature = _signature(gate, family)
                matching = [c for c in found if c.family == family and c.gaps == signature]
                if not matching:
                    continue
                wanted = self._wanted(state, (gate, family))
                best = min(matching, key=lambda c: (len(c.sessions.symmetric_difference(wanted)), c.head))
                found.remove(best)
                self.chains[(gate, family)] = Chain(family, best.head, dict(best.admit_tables), best.gap_head,
                                                    list(best.tables), set(best.sessions))
        self.stale += found
        heads = {f: {c.head for c in self.chains.values() if c.family == f} for f in (4, 6)}
        stale_heads = {f: {c.head for c in found if c.family == f} for f in (4, 6)}
        for sw_if_index in sorted(candidates):
            wants = gates.get(sw_if_index)
            for family in (4, 6):
                chain = self.chains.get((wants, family)) if wants is not None else None
                if chain is not None and sw_if_index in settled:
                    self.attached.setdefault(sw_if_index, {})[family] = chain.head  # L_U bound: chain on
                probe = set(stale_heads[family])
                if sw_if_index not in settled and wants is not None:
                    probe |= heads[family] - {chain.head if chain is not None else NO_INDEX}
                for head in sorted(probe):
                    if self._detach_if_attached(sw_if_index, family, head):
                        self.attached.get(sw_if_index, {}).pop(family, None)
        if found:
            log.info("classifier: %d stale chain(s) of ours detached, to be deleted", len(found))

    def _detach_if_attached(self, sw_if_index: int, family: int, head: int) -> bool:
        """A detach naming `head`: VPP refuses it (NO_SUCH_TABLE) unless that table is attached."""
        return self.calls.output_table(sw_if_index, family, head, add=False, not_attached_ok=True,
                                       what=f"classifier {head} off interface {sw_if_index}")

    # -- after the ACLs narrowed -------------------------------------------------------------------
    def finish(self, gates: Mapping[int, Gate]) -> None:
        for sw_if_index in [i for i in self.attached if i not in gates]:
            self._attach(sw_if_index, {})
            self.gate_of.pop(sw_if_index, None)
        used = {(g, f) for g in gates.values() for f in g.families()}
        doomed = [self.chains.pop(k) for k in [k for k in self.chains if k not in used]]
        live = {(g, f) for gate, f in used for g in gate.sets}
        self._wanted_memo = {k: v for k, v in self._wanted_memo.items() if k in live}
        for chain in [*doomed, *self.stale]:
            for table in chain.tables:
                self.calls.classify_table_del(table)
        self.stale = []

    def interface_gone(self, sw_if_index: int) -> None:
        """Called before a pod interface is deleted: its chains come off first. VPP keeps an
        interface's classifier record when the interface goes, and the next interface given that
        index inherits it with ip4-outacl off, where an add then does nothing (26.06;
        docs/vpp-driver.md, "Source guard")."""
        try:
            self._attach(sw_if_index, {})
        except ApiRefused as exc:
            log.warning("classifier chain on interface %d not detached: %s", sw_if_index, exc)
            self.attached.pop(sw_if_index, None)
        self.gate_of.pop(sw_if_index, None)

    # -- building ----------------------------------------------------------------------------------
    def _table(self, mask: bytes, next_table: int, miss: int, entries: int) -> int:
        return self.calls.classify_table_add(mask=mask, next_table=next_table, miss_next=miss,
                                             nbuckets=max(2, 1 << max(entries - 1, 1).bit_length()),
                                             memory_size=max(1 << 20, entries * 64 * 16))

    def _session(self, table: int, match: bytes, hit: int, *, add: bool = True) -> None:
        self.calls.classify_session(table, match, hit, OUR_OPAQUE, add=add)

    def _wanted(self, state: DataplaneState, key: ChainKey) -> set[Session]:
        """The admit sessions for the current members. Per gated set, only the members that came
        or went since the last call are worked out (IP set contents are immutable frozensets:
        an unchanged set is the same object), so a member change costs what that member needs."""
        gate, family = key
        wanted: set[Session] = set()
        for gated in gate.sets:
            ipset = state.ipsets.get(gated.set_id)
            now = None if ipset is None else ipset.members
            memo = self._wanted_memo.get((gated, family))
            if memo is None or memo[0] is not now:
                before = memo[1] if memo is not None else {}
                current = members(state, gated.set_id, family)
                held = {m: s for m, s in before.items() if m in current}
                added = sorted(current - held.keys())
                if added:
                    held.update(member_sessions(gated, family, added))
                memo = (now, held)
                self._wanted_memo[(gated, family)] = memo
            for sessions in memo[1].values():
                wanted |= sessions
        return wanted

    def _build(self, gate: Gate, family: int, wanted: set[Session]) -> Chain:
        tables: list[int] = []
        next_table = NO_INDEX
        for mask, matches in reversed(_gap_layout(gate, family)):  # back to front: each knows its next
            next_table = self._table(mask, next_table, PERMIT, len(matches))
            tables.insert(0, next_table)
            for match in matches:
                self._session(next_table, match, DROP)
        gap_head = next_table
        chain = Chain(family, gap_head, {}, gap_head, tables)
        sizes = Counter(mask for mask, _ in wanted)
        for mask in sorted(sizes, reverse=True) or [_first_mask(gate, family)]:
            self._admit_table(chain, mask, sizes[mask])
        return chain

    def _admit_table(self, chain: Chain, mask: bytes, expected: int) -> int:
        """An admit table for one mask. The chain's head never moves once attached: VPP's
        `output_acl_set_interface` add is a no-op while a table is attached (in_out_acl.c), so a
        later table goes in behind the head, which is re-pointed at it."""
        size = max(1024, 2 * expected)
        if not chain.admit_tables:
            table = self._table(mask, chain.head, PERMIT, size)
            chain.tables.insert(0, table)
            chain.head = table
        else:
            head = self.calls.classify_table_info(chain.head, what="classifier head")
            table = self._table(mask, head.next_table, PERMIT, size)
            self.calls.classify_table_add(mask=head.mask, next_table=table, miss_next=PERMIT, nbuckets=head.nbuckets,
                                          memory_size=1 << 20, index=chain.head, what="classifier head re-pointed")
            chain.tables.insert(1, table)
        chain.admit_tables[mask] = table
        return table

    def _sync_sessions(self, key: ChainKey, wanted: set[Session]) -> None:
        """Session adds and deletes for what the members' changes changed."""
        chain = self.chains[key]
        added = wanted - chain.sessions
        sizes = Counter(mask for mask, _ in added)
        for mask, match in sorted(added):
            table = chain.admit_tables.get(mask)
            if table is None:
                table = self._admit_table(chain, mask, sizes[mask])
            self._session(table, match, PERMIT)
            chain.sessions.add((mask, match))
        for mask, match in sorted(chain.sessions - wanted):
            self._session(chain.admit_tables[mask], match, PERMIT, add=False)
            chain.sessions.discard((mask, match))

    def _attach(self, sw_if_index: int, heads: dict[int, int]) -> None:
        """One family per request: VPP's add stops at the first family already attached (answering
        0), and a delete must name the attached table (in_out_acl.c)."""
        current = self.attached.get(sw_if_index, {})
        for family in (4, 6):
            old, new = current.get(family), heads.get(family)
            if old == new:
                continue
            if old is not None:
                self._set_output(sw_if_index, family, old, add=False)
            if new is not None:
                self._set_output(sw_if_index, family, new, add=True)
        if heads:
            self.attached[sw_if_index] = dict(heads)
        else:
            self.attached.pop(sw_if_index, None)

    def _set_output(self, sw_if_index: int, family: int, table: int, *, add: bool) -> None:
        self.calls.output_table(sw_if_index, family, table, add=add,
                                what=f"classifier {'on' if add else 'off'} interface {sw_if_index}")


def _gap_layout(gate: Gate, family: int) -> list[tuple[bytes, list[bytes]]]:
    """The gap tables a chain for (gate, family) has, head first: (mask, session matches) per shape."""
    by_shape: dict[tuple[int, int, int, int], list[GapEntry]] = defaultdict(list)
    for gap in gate.gaps:
        if gap.family == family:
            by_shape[gap.shape].append(gap)
    layout = []
    for shape in sorted(by_shape):
        mask = match_bytes(family, proto=1, src=mask_net(family, shape[1]), dst=mask_net(family, shape[2]),
                           dport=shape[3], full=True)
        layout.append((mask, [match_bytes(family, proto=g.proto, src=g.src, dst=g.dst, dport=g.dport)
                              for g in by_shape[shape]]))
    return layout


def _signature(gate: Gate, family: int) -> GapSignature:
    return tuple((mask, frozenset(matches)) for mask, matches in _gap_layout(gate, family))


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


def _gate_order(gate: Gate) -> tuple[str, str]:
    return (repr(gate.set_ids), repr((gate.sets, gate.gaps)))
