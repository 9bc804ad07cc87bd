"""The admit sessions a chain holds for its gate and the current members: (mask, match) pairs.

A member m of gated set i is admitted where P_i holds (gate.py). The set's host members are first
aggregated into blocks (aggregate.py: aligned prefixes of a few lengths, every address a member),
and a block is admitted as a member would be: one session per entry e of P_i whose source prefix
nests with it, matching the longer of the two prefixes, e's destination prefix, protocol and
destination-port block. Where P_i is the whole drop region (the set's `everywhere` families) one
session per block on its source prefix alone does the same. Where P_i was too ragged to hold as
entries (the set's `basis`), it is worked out per block, and per member inside a block whose
entries are cut below it (an earlier deny of part of it). Members that are prefixes are admitted
as they are. Since a block holds members only, a session admits members only, and every member is
in some block: the sessions admit exactly the members on P_i.

`AdmitSessions` remembers, per (gated set, family), the members last seen, their blocks and each
block's sessions, so a member change works out the blocks of the groups it touches, no more.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from vppagent.drivers.vpp.classifier.aggregate import SPAN, Aggregated, Block, width
from vppagent.drivers.vpp.classifier.gate import MAX_PERMIT_TABLES, GapEntry, Gate, GatedSet, set_ladder
from vppagent.drivers.vpp.classifier.layout import mask_net, match_bytes, member_mask
from vppagent.drivers.vpp.classifier.memberwise import member_entries
from vppagent.drivers.vpp.classifier.regions import Unfit
from vppagent.drivers.vpp.classifier.source import member_network
from vppagent.policy.model import IPNetwork
from vppagent.state.model import DataplaneState

Session = tuple[bytes, bytes]  # (table mask, match)


def members(state: DataplaneState, set_id: str, family: int) -> frozenset[str]:
    """The set's members of one family, as canonical text (an IPv6 member has a colon)."""
    ipset = state.ipsets.get(set_id)
    if ipset is None:
        return frozenset()
    return frozenset(m for m in ipset.members if (":" in m) == (family == 6))


class Admitter:
    """One gated set's sessions for any prefix of its members (a block, a prefix member)."""

    def __init__(self, gated: GatedSet, family: int) -> None:
        self.family = family
        self.basis = next((decided for f, decided in gated.basis if f == family), None)
        self.everywhere = family in gated.everywhere
        self.by_length: dict[int, dict[int, list[GapEntry]]] = defaultdict(lambda: defaultdict(list))
        own = [e for e in gated.admits if e.family == family]
        for e in own:
            self.by_length[e.src.prefixlen][int(e.src.network_address)].append(e)
        self.tails = {e: _tail(family, e) for e in own}

    def sessions(self, net: IPNetwork) -> set[Session]:
        family = self.family
        if self.basis is not None:
            block = net.prefixlen < width(family)
            try:
                found, unfit = member_entries(family, self.basis, [net]), False
            except Unfit:
                if not block:
                    raise
                found, unfit = [], True  # (the gate checked the members, not the blocks)
            if block and (unfit or any(e.src != net for e in found)):
                # cut below the block (a deny of part of it), or unfit as a whole: its members one
                # by one, whose entries have the member as source (what the gate bounded)
                return {s for host in net for s in self.sessions(ipaddress.ip_network(host))}
            return {_session(family, e.src, _tail(family, e)) for e in found}
        if self.everywhere:
            return {(member_mask(family, net.prefixlen), match_bytes(family, src=net))}
        w = width(family)
        address, length = int(net.network_address), net.prefixlen
        out: set[Session] = set()
        for src_len, table in self.by_length.items():
            if src_len <= length:  # the entry's source holds the member: match the member
                for e in table.get(address >> (w - src_len) << (w - src_len), ()):
                    out.add(_session(family, net, self.tails[e]))
            else:  # the member holds the entry's source: match the entry's
                for prefix, found_entries in table.items():
                    if prefix >> (w - length) << (w - length) == address:
                        out.update(_session(family, e.src, self.tails[e]) for e in found_entries)
        return out


def set_sessions(gated: GatedSet, family: int, held: Iterable[str]) -> set[Session]:
    """The sessions for these members of the set, all at once (aggregated as a chain holds them)."""
    admitter = Admitter(gated, family)
    hosts, prefixes = _split(family, held)
    aggregated = Aggregated(family, set_ladder(gated, family, MAX_PERMIT_TABLES))
    aggregated.update(hosts, ())
    out: set[Session] = set()
    for net in [*(_net(family, b) for b in aggregated.all_blocks()), *prefixes]:
        out |= admitter.sessions(net)
    return out


@dataclass
class _Held:
    """One (gated set, family) as a chain last saw it."""

    seen: object  # the set's members object last seen (contents are never changed in place once shared)
    members: frozenset[str]
    admitter: Admitter
    aggregated: Aggregated
    by_block: dict[Block, frozenset[Session]] = field(default_factory=dict)  # the hosts' blocks
    by_prefix: dict[IPNetwork, frozenset[Session]] = field(default_factory=dict)  # members that are prefixes


class AdmitSessions:
    """The admit sessions wanted for a gate's current members, remembered per (gated set, family)."""

    def __init__(self) -> None:
        self._held: dict[tuple[GatedSet, int], _Held] = {}

    def wanted(self, state: DataplaneState, gate: Gate, family: int) -> set[Session]:
        out: set[Session] = set()
        for gated in gate.sets:
            held = self._current(state, gated, family)
            for sessions in (*held.by_block.values(), *held.by_prefix.values()):
                out |= sessions
        return out

    def keep_only(self, live: set[tuple[GatedSet, int]]) -> None:
        self._held = {k: v for k, v in self._held.items() if k in live}

    def _current(self, state: DataplaneState, gated: GatedSet, family: int) -> _Held:
        ipset = state.ipsets.get(gated.set_id)
        now = None if ipset is None else ipset.members
        held = self._held.get((gated, family))
        if held is not None and held.seen is now:
            return held
        current = members(state, gated.set_id, family)
        if held is None:
            lengths = set_ladder(gated, family, MAX_PERMIT_TABLES)
            held = _Held(now, frozenset(), Admitter(gated, family), Aggregated(family, lengths))
            self._held[(gated, family)] = held
        try:
            added, removed = current - held.members, held.members - current
            hosts_added, prefixes_added = _split(family, added)
            hosts_removed, prefixes_removed = _split(family, removed)
            came, went = held.aggregated.update(hosts_added, hosts_removed)
            for block in went:
                del held.by_block[block]
            for block in came:
                held.by_block[block] = _fitting(held.admitter, _net(family, block))
            for net in prefixes_removed:
                del held.by_prefix[net]
            for net in prefixes_added:
                held.by_prefix[net] = _fitting(held.admitter, net)
        except BaseException:  # worked out again next time
            del self._held[(gated, family)]
            raise
        held.seen, held.members = now, current
        return held


def _fitting(admitter: Admitter, net: IPNetwork) -> frozenset[Session]:
    """The sessions of a block or prefix member, without those of members the gate cannot hold.
    A gate checks the members it was worked out for (gate.py: a set with a member it cannot
    hold is not gated), but a chain still moving to or from it sees the set's next members: a
    member that came since, whose admit region the classifier cannot hold exactly (Unfit), is
    not admitted. That is below the gate, so fail closed: its packets are dropped in the gaps,
    never let through, until the list's next gate (made for the new members) takes over."""
    try:
        return frozenset(admitter.sessions(net))
    except Unfit:
        if net.prefixlen == net.max_prefixlen or net.num_addresses > 1 << SPAN:
            return frozenset()
    out: set[Session] = set()
    for host in net:
        try:
            out |= admitter.sessions(ipaddress.ip_network(host))
        except Unfit:
            continue
    return frozenset(out)


def inside(sessions: set[Session], by: set[Session]) -> set[Session]:
    """Those of `sessions` whose every packet some session of `by` matches: a session (m, x)
    matches a packet p when p & m == x, so (m', x') holds (m, x) when m' has no bit m lacks and
    x & m' == x'. (A chain diffs its admits with it: chains.py, make-before-break.)"""
    if not sessions or not by:
        return set()
    matches: dict[bytes, set[bytes]] = defaultdict(set)
    for mask, match in by:
        matches[mask].add(match)
    masks = [(int.from_bytes(m, "big"), found) for m, found in matches.items()]
    out: set[Session] = set()
    for mask, match in sessions:
        m, x, size = int.from_bytes(mask, "big"), int.from_bytes(match, "big"), len(match)
        if any(outer & m == outer and (x & outer).to_bytes(size, "big") in found for outer, found in masks):
            out.add((mask, match))
    return out


def _split(family: int, held: Iterable[str]) -> tuple[list[int], set[IPNetwork]]:
    """Host members as integers, and the members that are prefixes."""
    w = width(family)
    hosts: list[int] = []
    prefixes: set[IPNetwork] = set()
    for m in held:
        net = member_network(m)
        if net.prefixlen == w:
            hosts.append(int(net.network_address))
        else:
            prefixes.add(net)
    return hosts, prefixes


def _net(family: int, block: Block) -> IPNetwork:
    return ipaddress.IPv4Network(block) if family == 4 else ipaddress.IPv6Network(block)


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
