"""Read classifier chains back from VPP and tell ours from anyone else's.

VPP's classifier tables carry no tag, so ownership is marked on the sessions instead: every
session the driver adds has `opaque_index = OUR_OPAQUE` ("vpa1" in ASCII). The in/out ACL nodes
(ip_in_out_acl.c) do not read a session's opaque_index (only the l2/ip classify nodes hand it on
as buffer metadata, and the driver attaches chains only as output ACLs), so the mark changes no
verdict, and `classify_session_dump` returns it.

A chain is provably ours when, walked from a head (a table no other table points to):
- it holds at least one session (every gated chain has gap sessions), and every session in it
  carries OUR_OPAQUE;
- its tables are member tables (mask: the source prefix only; hits permit) followed by gap tables
  (protocol always masked; hits drop), all of one family's layout, and its end misses to permit;
- none of its tables is also reached from another head.
Anything else is left alone: tables that are not provably ours are never changed or deleted.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from vppagent.drivers.vpp.connection import VppConnection
from vppagent.policy.model import IPNetwork

log = logging.getLogger(__name__)

OUR_OPAQUE = 0x76706131  # "vpa1": the mark on every classifier session the driver adds
NO_INDEX = 0xFFFFFFFF
PERMIT = NO_INDEX
NO_SUCH_TABLE = -65  # VNET_API_ERROR_NO_SUCH_TABLE
DROP = 0
# Offsets from the IP header: (protocol, source, destination, destination port), vectors to match.
LAYOUT = {4: (9, 12, 16, 22, 2), 6: (6, 8, 24, 42, 3)}


def match_bytes(family: int, *, proto: int = 0, src: IPNetwork | None = None, dst: IPNetwork | None = None,
                dport: int = 0, full: bool = False) -> bytes:
    """A match (values) or, with full=True, a mask (ones where the value matters)."""
    proto_at, src_at, dst_at, dport_at, vectors = LAYOUT[family]
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


def mask_net(family: int, length: int) -> IPNetwork:
    return ipaddress.ip_network(("0.0.0.0" if family == 4 else "::", length))


def member_mask(family: int, length: int) -> bytes:
    return match_bytes(family, src=mask_net(family, length), full=True)


# A chain's gap part as it can be compared with what a gate needs: (mask, matches) per table, in order.
GapSignature = tuple[tuple[bytes, frozenset[bytes]], ...]


@dataclass
class FoundChain:
    """One chain of ours as VPP holds it."""

    family: int
    tables: list[int]  # head first
    member_tables: dict[int, int]  # prefix length -> table index
    gap_head: int
    gaps: GapSignature
    members: set[IPNetwork] = field(default_factory=set)

    @property
    def head(self) -> int:
        return self.tables[0]


@dataclass
class _Table:
    index: int
    mask: bytes
    next_table: int
    miss: int
    nbuckets: int
    sessions: list[tuple[bytes, int, int]]  # (match, hit_next_index, opaque_index)


def read_chains(conn: VppConnection) -> list[FoundChain]:
    """Our chains in VPP (reads only: table ids, then info and sessions per table)."""
    ids = [int(i) for i in conn.call("classify_table_ids").ids]
    if not ids:
        return []
    tables: dict[int, _Table] = {}
    for index in ids:
        info = conn.call("classify_table_info", table_id=index, accept=(0, -91), what=f"classifier table {index}")
        if int(info.retval) != 0:
            continue  # deleted between the two requests
        sessions = [(bytes(s.match), int(s.hit_next_index), int(s.opaque_index))
                    for s in conn.dump("classify_session_dump", table_id=index)]
        tables[index] = _Table(index, bytes(info.mask), int(info.next_table_index), int(info.miss_next_index),
                               int(info.nbuckets), sessions)
    pointed = {t.next_table for t in tables.values()}
    walks: list[list[int]] = []
    for head in sorted(i for i in tables if i not in pointed):
        walk, at = [], head
        while at in tables and at not in walk:
            walk.append(at)
            at = tables[at].next_table
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
    if not sessions or any(opaque != OUR_OPAQUE for _, _, opaque in sessions):
        return None
    if walk[-1].next_table != NO_INDEX or any(t.miss != PERMIT for t in walk):
        return None
    family = next((f for f, layout in LAYOUT.items() if len(walk[0].mask) == layout[4] * 16), None)
    if family is None or any(len(t.mask) != len(walk[0].mask) for t in walk):
        return None
    lengths = {member_mask(family, n): n for n in range(33 if family == 4 else 129)}
    chain = FoundChain(family, [t.index for t in walk], {}, NO_INDEX, ())
    gaps: list[tuple[bytes, frozenset[bytes]]] = []
    for table in walk:
        length = lengths.get(table.mask)
        if length is not None and not gaps:  # member tables come first
            if any(hit != PERMIT for _, hit, _ in table.sessions) or length in chain.member_tables:
                return None
            chain.member_tables[length] = table.index
            src_at = LAYOUT[family][1]
            size = 4 if family == 4 else 16
            for match, _, _ in table.sessions:
                address = ipaddress.ip_address(match[src_at:src_at + size])
                chain.members.add(ipaddress.ip_network((address, length)))
        elif length is None:
            if any(hit != DROP for _, hit, _ in table.sessions):
                return None
            if not gaps:
                chain.gap_head = table.index
            gaps.append((table.mask, frozenset(m for m, _, _ in table.sessions)))
        else:
            return None  # a member table behind a gap table: not a layout the driver builds
    if not gaps or not chain.member_tables:
        return None
    chain.gaps = tuple(gaps)
    return chain
