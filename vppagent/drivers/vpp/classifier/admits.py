"""The admit sessions a chain holds for its gate and the current members: (mask, match) pairs.

A member m of gated set i is admitted where P_i holds (gate.py): one session per entry e of P_i
whose source prefix nests with m, matching the longer of the two prefixes, e's destination
prefix, protocol and destination-port block. Where P_i is the whole drop region (the set's
`everywhere` families) one session per member on its source address alone does the same. Where
P_i was too ragged to hold as entries (the set's `basis`), it is worked out per member.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable

from vppagent.drivers.vpp.classifier.gate import GapEntry, GatedSet
from vppagent.drivers.vpp.classifier.layout import mask_net, match_bytes, member_mask
from vppagent.drivers.vpp.classifier.memberwise import member_entries
from vppagent.drivers.vpp.classifier.regions import Basis
from vppagent.policy.model import IPNetwork
from vppagent.state.model import DataplaneState

Session = tuple[bytes, bytes]  # (table mask, match)


def members(state: DataplaneState, set_id: str, family: int) -> frozenset[str]:
    """The set's members of one family, as canonical text (an IPv6 member has a colon)."""
    ipset = state.ipsets.get(set_id)
    if ipset is None:
        return frozenset()
    return frozenset(m for m in ipset.members if (":" in m) == (family == 6))


def member_sessions(gated: GatedSet, family: int, held: list[str]) -> dict[str, frozenset[Session]]:
    """Each member's admit sessions (a session two members both need is in both)."""
    return {m: frozenset(set_sessions(gated, family, [m])) for m in held}


def set_sessions(gated: GatedSet, family: int, held: Iterable[str]) -> set[Session]:
    nets = [ipaddress.ip_network(m, strict=False) for m in held]
    for f, decided in gated.basis:
        if f == family:
            return _member_wise(family, decided, nets)
    if family in gated.everywhere:
        return {(member_mask(family, n.prefixlen), match_bytes(family, src=n)) for n in nets}
    own = [e for e in gated.admits if e.family == family]
    if not own:
        return set()
    by_length: dict[int, dict[int, list[GapEntry]]] = defaultdict(lambda: defaultdict(list))
    for e in own:
        by_length[e.src.prefixlen][int(e.src.network_address)].append(e)
    width = 32 if family == 4 else 128
    tails = {e: _tail(family, e) for e in own}
    out: set[Session] = set()
    for net in nets:
        address, length = int(net.network_address), net.prefixlen
        for src_len, table in by_length.items():
            if src_len <= length:  # the entry's source holds the member: match the member
                for e in table.get(address >> (width - src_len) << (width - src_len), ()):
                    out.add(_session(family, net, tails[e]))
            else:  # the member holds the entry's source: match the entry's
                for prefix, found in table.items():
                    if prefix >> (width - length) << (width - length) == address:
                        out.update(_session(family, e.src, tails[e]) for e in found)
    return out


def _member_wise(family: int, decided: Basis, nets: list[IPNetwork]) -> set[Session]:
    return {_session(family, e.src, _tail(family, e)) for e in member_entries(family, decided, nets)}


def _tail(family: int, e: GapEntry) -> tuple[bytes, bytes]:
    """The entry's mask and match without the source: reused for every member."""
    return (match_bytes(family, proto=1, dst=mask_net(family, e.dst.prefixlen), dport=e.dport_mask, full=True),
            match_bytes(family, proto=e.proto, dst=e.dst, dport=e.dport))


def _session(family: int, src: IPNetwork, tail: tuple[bytes, bytes]) -> Session:
    mask, match = (_merge(tail[0], member_mask(family, src.prefixlen)),
                   _merge(tail[1], match_bytes(family, src=src)))
    return mask, match


def _merge(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") | int.from_bytes(b, "big")).to_bytes(len(a), "big")
