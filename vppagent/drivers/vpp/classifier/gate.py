"""Which lists move a large IP set to the classifier (a gate), and what the classifier must then
hold: the set and the drop region G.

A list qualifies when it is an ingress list in which the set appears only as the source of allow
rules ("allow <tcp|udp> <ports> from <set>"), with at least `min_members` members, and G contains
only TCP/UDP boxes whose destination ports lie below EPHEMERAL_START (any source port). Then the
ACL gets L_U (the list compiled with the set = every address) and the classifier chain gets
"members -> permit; G -> drop; anything else -> permit", G being the set's rules' region minus
what L_0 (the set = no address) allows. Why L_U AND chain = L, and why only this shape:
docs/vpp-driver.md, "Large IP sets".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.boxes import Box, full_box, intersect, subtract_all, width
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import TCP, UDP, Action, Direction, IPNetwork, Rule, Tier, WorkloadEndpoint
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import STAGED_KINDS, DataplaneState, Kind, PolicyKey

EPHEMERAL_START = 32768
MAX_GAP_SESSIONS = 256
MAX_GAP_TABLES = 8
BOX_LIMIT = 512  # beyond this the region is too ragged for a few classifier tables anyway
REGION_POLICY = "__vppagent_gated_rules"


@dataclass(frozen=True, order=True)
class GapEntry:
    """One drop session: source (peer) prefix, destination (pod side) prefix, protocol, and a
    destination-port block (value under a 16-bit mask)."""

    family: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    dport: int
    dport_mask: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.family, self.src.prefixlen, self.dst.prefixlen, self.dport_mask)


@dataclass(frozen=True)
class Gate:
    """The classifier side of a gated list: the set and the drop region G."""

    set_id: str
    gaps: tuple[GapEntry, ...]

    def families(self) -> list[int]:
        return sorted({g.family for g in self.gaps})


def gated_lists(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                rule_limit: int, min_members: int,
                cache: CompileCache | None = None) -> tuple[CompiledList, Gate] | None:
    """(L_U, gate) when the list qualifies, else None (compile it the ordinary way). With `cache`,
    the three compiles share fragments with every other list (policy/cache.py): only the rules
    that use the gated set differ between L_U, L_0 and the ordinary list."""
    if direction is not Direction.INGRESS or not ep.active:
        return None
    set_id = _candidate(catalog, state, ep, direction, min_members)
    if set_id is None:
        return None
    universe_state = _with_members(state, set_id, ("0.0.0.0/0", "::/0"))
    universe = compile_endpoint(universe_state, ep, direction, rule_limit=rule_limit, cache=cache)
    empty = compile_endpoint(_with_members(state, set_id, ()), ep, direction, rule_limit=rule_limit, cache=cache)
    region = _gated_rules_region(universe_state, ep, direction, set_id, rule_limit, cache)
    gaps = _gaps(region, empty)
    if not gaps:
        return None  # the set changes nothing here (or G has a shape the classifier cannot take)
    return universe, Gate(set_id, gaps)


def _rules(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> Iterable[Rule]:
    for tier in ep.tiers:
        for key in tier.policies(direction):
            if key.kind not in STAGED_KINDS:
                yield from catalog.policy(key).rules(direction)
    for name in ep.profile_ids:
        yield from catalog.profile(name).rules(direction)


def _candidate(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
               min_members: int) -> str | None:
    """The largest address set used only as the source of allow rules, if it is large enough."""
    usable: dict[str, bool] = {}
    for rule in _rules(catalog, ep, direction):
        if rule.action is Action.LOG:
            continue  # the compiler ignores log rules
        for set_id in rule.src_ip_sets:
            usable[set_id] = usable.get(set_id, True) and rule.action is Action.ALLOW
        for set_id in (*rule.dst_ip_sets, *rule.not_src_ip_sets, *rule.not_dst_ip_sets, *rule.ip_port_set_ids()):
            usable[set_id] = False
    sizes = {s: len(state.ipsets[s].members) for s, ok in usable.items()
             if ok and s in state.ipsets and state.ipsets[s].type is not IPSetType.IP_AND_PORT}
    large = [s for s, n in sizes.items() if n >= min_members]
    return max(large, key=lambda s: (sizes[s], s)) if large else None


def _with_members(state: DataplaneState, set_id: str, members: tuple[str, ...]) -> DataplaneState:
    copy = state.copy()
    copy.tables[Kind.IPSET][set_id] = IPSet(set_id, IPSetType.NET, frozenset(members))
    return copy


def _gated_rules_region(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, set_id: str,
                        rule_limit: int, cache: CompileCache | None) -> CompiledList:
    """R: where the set's rules match when the set is every address. Verdicts of L_0 and L_U can
    differ only there, so G' = R minus what L_0 allows satisfies G <= G' <= (L_0 denies), which
    is all the chain needs (gate docstring), and is cheap: R is small and L_0 is clipped to it."""
    rules = []
    for tier in ep.tiers:
        for key in tier.policies(direction):
            pb = state.policies.get(key)
            if pb is not None and key.kind not in STAGED_KINDS:
                rules += [r for r in pb.inbound_rules if set_id in r.src_ip_set_ids]
    for name in ep.profile_ids:
        rules += [r for r in state.profiles[name].inbound_rules if set_id in r.src_ip_set_ids]
    synthetic = state.copy()
    key = PolicyKey(REGION_POLICY, "", "")
    synthetic.tables[Kind.POLICY][key] = felix.Policy(inbound_rules=rules)
    only = WorkloadEndpoint(ep.key, ep.name, True, (), (), (), (Tier("region", (key,), (), "Deny"),))
    return compile_endpoint(synthetic, only, direction, rule_limit=rule_limit, cache=cache)


def _box(rule: FlatRule) -> Box:
    proto = (1, 255) if rule.proto == 0 else (rule.proto, rule.proto)
    return Box(int(rule.src.network_address), rule.src.prefixlen, int(rule.dst.network_address),
               rule.dst.prefixlen, proto[0], proto[1], rule.srcport_or_icmptype.first,
               rule.srcport_or_icmptype.last, rule.dstport_or_icmpcode.first, rule.dstport_or_icmpcode.last)


def _allowed(compiled: CompiledList, family: int, within: Box) -> list[Box] | None:
    """The part of `within` a first-match list allows, as boxes."""
    w = width(family)
    earlier: list[Box] = []
    allowed: list[Box] = []
    for rule in compiled.rules:
        if rule.family != family:
            continue
        box = intersect(_box(rule), within, w)
        if box is None:
            continue
        if rule.action == "allow":
            region = subtract_all([box], earlier, w, BOX_LIMIT)
            if region is None:
                return None
            allowed += region
        earlier.append(box)
    if compiled.default_action == "allow":
        region = subtract_all([within], earlier, w, BOX_LIMIT)
        if region is None:
            return None
        allowed += region
    return allowed


def _gaps(region: CompiledList, empty: CompiledList) -> tuple[GapEntry, ...]:
    entries: list[GapEntry] = []
    for family in (4, 6):
        areas = _allowed(region, family, full_box())
        if areas is None:
            return ()
        for area in areas:
            base = _allowed(empty, family, area)
            gap = None if base is None else subtract_all([area], base, width(family), BOX_LIMIT)
            if gap is None:
                return ()
            for box in gap:
                if box.proto_lo != box.proto_hi or box.proto_lo not in (TCP, UDP) \
                        or (box.a_lo, box.a_hi) != (0, 65535) or box.b_hi >= EPHEMERAL_START:
                    return ()
                src = _net(family, box.src, box.src_len)
                dst = _net(family, box.dst, box.dst_len)
                entries += [GapEntry(family, src, dst, box.proto_lo, value, mask)
                            for value, mask in port_blocks(box.b_lo, box.b_hi)]
            if len(entries) > MAX_GAP_SESSIONS:
                return ()
    if len({e.shape for e in entries}) > MAX_GAP_TABLES:
        return ()
    return tuple(sorted(set(entries)))


def _net(family: int, address: int, length: int) -> IPNetwork:
    if family == 4:
        return ipaddress.IPv4Network((address, length))
    return ipaddress.IPv6Network((address, length))


def port_blocks(first: int, last: int) -> list[tuple[int, int]]:
    """[first, last] as aligned power-of-two blocks: (value, 16-bit mask) pairs."""
    out = []
    while first <= last:
        size = first & -first if first else 1 << 16
        while first + size - 1 > last:
            size >>= 1
        out.append((first, 0xFFFF & ~(size - 1)))
        first += size
    return out
