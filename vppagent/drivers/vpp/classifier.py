"""Classifier chains for gated lists (gate.py): build them, keep their members current, attach them.

One chain per (gate, family), shared by every interface whose ingress list has that gate:

    member tables (one per prefix length; hit -> permit)
      -> gap tables (one per mask shape; hit -> drop)
      -> miss -> permit

Tables match from the IP header (current_data_flag 1, offset 0), as VPP's own classifier tests
build them; the same layout serves input and output. A member change is one session add or
delete per chain. The chain is attached as the output ACL of the pod interface
(`output_acl_set_interface`) before the ACL plugin gets the wider list L_U, and detached after it
gets the narrower list back (make before break; see gate.py for why L_U AND chain = L).

Classifier tables carry no tags and the vendored API has no per-table dump, so chains are known
only to the driver that made them: after an agent restart they are rebuilt (and the old ones are
left behind), after a VPP restart (our table ids gone from `classify_table_ids`) forgotten.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.drivers.vpp.connection import VppConnection
from vppagent.drivers.vpp.gate import GapEntry, Gate
from vppagent.policy.model import IPNetwork
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)

NO_INDEX = 0xFFFFFFFF
PERMIT = NO_INDEX  # hit/miss next ~0: continue along the feature arc
DROP = 0
# Offsets from the IP header: (protocol, source, destination, destination port), vectors to match.
LAYOUT = {4: (9, 12, 16, 22, 2), 6: (6, 8, 24, 42, 3)}
ChainKey = tuple[Gate, int]


@dataclass
class Chain:
    head: int
    member_tables: dict[int, int]  # prefix length -> table index (the chain's first tables)
    gap_head: int
    tables: list[int]
    members: set[str] = field(default_factory=set)  # canonical member text, as the IP set holds it


def _layout(family: int) -> tuple[int, int, int, int, int]:
    return LAYOUT[family]


def _bytes(family: int, *, proto: int = 0, src: IPNetwork | None = None, dst: IPNetwork | None = None,
           dport: int = 0, full: bool = False) -> bytes:
    """A match (values) or, with full=True, a mask (ones where the value matters)."""
    proto_at, src_at, dst_at, dport_at, vectors = _layout(family)
    out = bytearray(vectors * 16)
    if proto:
        out[proto_at] = 0xFF if full else proto
    for net, at in ((src, src_at), (dst, dst_at)):
        if net is not None and net.prefixlen:
            raw = net.netmask.packed if full else net.network_address.packed
            out[at:at + len(raw)] = raw
    if dport:
        out[dport_at:dport_at + 2] = dport.to_bytes(2, "big")
    return bytes(out)


class ClassifierChains:
    def __init__(self, conn: VppConnection) -> None:
        self.conn = conn
        self.chains: dict[ChainKey, Chain] = {}
        self.attached: dict[int, dict[int, int]] = {}  # sw_if_index -> {family: head} (output)
        self.gate_of: dict[int, Gate] = {}  # sw_if_index -> the gate attached there

    def forget_if_vpp_restarted(self) -> None:
        """After a reconnect: our tables gone means VPP restarted and everything went with them."""
        if not self.chains:
            return
        reply = self.conn.call("classify_table_ids")
        present = {int(i) for i in reply.ids}
        if any(t not in present for c in self.chains.values() for t in c.tables):
            log.info("classifier tables gone (VPP restarted): rebuilding chains")
            self.chains.clear()
            self.attached.clear()
            self.gate_of.clear()

    # -- before the ACLs widen ---------------------------------------------------------------------
    def prepare(self, gates: Mapping[int, Gate], state: DataplaneState) -> None:
        """Chains exist with current members; interfaces with a gate are attached."""
        for gate in set(gates.values()):
            for family in gate.families():
                key = (gate, family)
                members = _members(state, gate.set_id, family)
                if key not in self.chains:
                    self.chains[key] = self._build(gate, family, len(members))
                self._sync_members(key, members)
        for sw_if_index, gate in gates.items():
            heads = {f: self.chains[(gate, f)].head for f in gate.families()}
            self._attach(sw_if_index, heads)
            self.gate_of[sw_if_index] = gate

    # -- after the ACLs narrowed -------------------------------------------------------------------
    def finish(self, gates: Mapping[int, Gate]) -> None:
        for sw_if_index in [i for i in self.attached if i not in gates]:
            self._attach(sw_if_index, {})
            self.gate_of.pop(sw_if_index, None)
        used = {(g, f) for g in gates.values() for f in g.families()}
        for key in [k for k in self.chains if k not in used]:
            chain = self.chains.pop(key)
            for table in chain.tables:
                self.conn.call("classify_add_del_table", accept=(0, -65), is_add=False, del_chain=False,
                               table_index=table, what=f"classifier table {table}")

    def interface_gone(self, sw_if_index: int) -> None:
        self.attached.pop(sw_if_index, None)
        self.gate_of.pop(sw_if_index, None)

    # -- building ----------------------------------------------------------------------------------
    def _table(self, mask: bytes, next_table: int, miss: int, entries: int) -> int:
        vectors = len(mask) // 16
        reply = self.conn.call(
            "classify_add_del_table", is_add=True, del_chain=False, table_index=NO_INDEX,
            nbuckets=max(2, 1 << max(entries - 1, 1).bit_length()), memory_size=max(1 << 20, entries * 64 * 16),
            skip_n_vectors=0, match_n_vectors=vectors, next_table_index=next_table, miss_next_index=miss,
            current_data_flag=1, current_data_offset=0, mask_len=len(mask), mask=mask, what="classifier table")
        return int(reply.new_table_index)

    def _session(self, table: int, match: bytes, hit: int, *, add: bool = True) -> None:
        self.conn.call("classify_add_del_session", is_add=add, table_index=table, hit_next_index=hit,
                       opaque_index=NO_INDEX, advance=0, action=0, metadata=0, match_len=len(match),
                       match=match, what=f"classifier session in table {table}")

    def _build(self, gate: Gate, family: int, expected_members: int) -> Chain:
        gaps = [g for g in gate.gaps if g.family == family]
        by_shape: dict[tuple[int, int, int, int], list[GapEntry]] = defaultdict(list)
        for gap in gaps:
            by_shape[gap.shape].append(gap)
        tables: list[int] = []
        next_table = NO_INDEX
        for shape in sorted(by_shape, reverse=True):  # built back to front: each knows its next
            entries = by_shape[shape]
            mask = _bytes(family, proto=1, src=_mask_net(family, shape[1]), dst=_mask_net(family, shape[2]),
                          dport=shape[3], full=True)
            next_table = self._table(mask, next_table, PERMIT, len(entries))
            tables.insert(0, next_table)
            for gap in entries:
                self._session(next_table, _bytes(family, proto=gap.proto, src=gap.src, dst=gap.dst,
                                                 dport=gap.dport), DROP)
        gap_head = next_table
        chain = Chain(gap_head, {}, gap_head, tables)
        self._member_table(chain, family, 32 if family == 4 else 128, expected_members)  # pods are hosts
        return chain

    def _member_table(self, chain: Chain, family: int, length: int, expected: int) -> int:
        """A member table for one prefix length. The chain's head never moves once built: VPP's
        `output_acl_set_interface` add is a no-op while a table is attached (in_out_acl.c), so a
        later table goes in behind the head, which is re-pointed at it."""
        mask = _bytes(family, src=_mask_net(family, length), full=True)
        if not chain.member_tables:
            table = self._table(mask, chain.head, PERMIT, max(1024, 2 * expected))
            chain.tables.insert(0, table)
            chain.head = table
        else:
            head_info = self.conn.call("classify_table_info", table_id=chain.head, what="classifier head")
            table = self._table(mask, int(head_info.next_table_index), PERMIT, max(1024, 2 * expected))
            head_mask = bytes(head_info.mask)
            self.conn.call("classify_add_del_table", is_add=True, del_chain=False, table_index=chain.head,
                           nbuckets=int(head_info.nbuckets), memory_size=1 << 20, skip_n_vectors=0,
                           match_n_vectors=len(head_mask) // 16, next_table_index=table, miss_next_index=PERMIT,
                           current_data_flag=1, current_data_offset=0, mask_len=len(head_mask), mask=head_mask,
                           what="classifier head re-pointed")
            chain.tables.insert(1, table)
        chain.member_tables[length] = table
        return table

    def _sync_members(self, key: ChainKey, members: frozenset[str]) -> None:
        """Sessions for the members that came and went (compared as text: only those are parsed)."""
        chain = self.chains[key]
        _, family = key
        for text in sorted(members - chain.members):
            net = ipaddress.ip_network(text, strict=False)
            table = chain.member_tables.get(net.prefixlen)
            if table is None:
                table = self._member_table(chain, family, net.prefixlen, len(members))
            self._session(table, _bytes(family, src=net), PERMIT)
            chain.members.add(text)
        for text in sorted(chain.members - members):
            net = ipaddress.ip_network(text, strict=False)
            self._session(chain.member_tables[net.prefixlen], _bytes(family, src=net), PERMIT, add=False)
            chain.members.discard(text)

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
        self.conn.call("output_acl_set_interface", sw_if_index=sw_if_index,
                       ip4_table_index=table if family == 4 else NO_INDEX,
                       ip6_table_index=table if family == 6 else NO_INDEX, l2_table_index=NO_INDEX, is_add=add,
                       what=f"classifier {'on' if add else 'off'} interface {sw_if_index}")

def _mask_net(family: int, length: int) -> IPNetwork:
    return ipaddress.ip_network(("0.0.0.0" if family == 4 else "::", length))


def _members(state: DataplaneState, set_id: str, family: int) -> frozenset[str]:
    """The set's members of one family, as canonical text (an IPv6 member has a colon)."""
    ipset = state.ipsets.get(set_id)
    if ipset is None:
        return frozenset()
    return frozenset(m for m in ipset.members if (":" in m) == (family == 6))
