"""A mapping sketch: one endpoint's policy (our model) -> VPP npol objects, as a pure function.

Research code for docs/npol.md, not wired into the agent. `map_endpoint(cat, endpoint)` returns an
`NpolEndpoint`: per direction an ordered list of policy bodies (lists of `NRule`), the profiles and
the two defaults, plus every IP set the rules refer to (base sets, and derived sets the mapping
computes). The facts it relies on are checked on real VPP by bench/npol_probe.py and
tests/realvpp/test_npol_facts.py; in short (VPP 26.06's npol_match.c):

- a rule matches when every filter and every entry category holds; inside a positive category the
  entries OR (IP sets too: "in any listed set"), a not-category fails on any hit; on one side the
  port ranges and the IP+port sets form one OR group;
- the first matching rule ends its policy whatever its action (a log rule too); allow and deny end
  the evaluation, **pass jumps to the profiles** (not to the next policy); no match: next policy;
  then `policy_default` (allow / deny / pass to profiles); profiles in order, then
  `profile_default`; a pass inside a profile is an error (no verdict).

What Calico needs beyond that, and how this mapping closes it (exactly; the differential check in
npol_probe.py compares it with the reference evaluator):

- *tiers*: policies of a tier follow each other; a tier whose default is not "Pass" ends with a
  deny-all policy; a tier with default "Pass" needs nothing (no match falls into the next tier).
  The last live tier ends with `policy_default` deny or pass-to-profiles.
- *pass in a tier that is not the last* (npol would skip every later tier): the pass rule is left
  out, and every later rule of its tier (end-of-tier deny included) is rewritten as `r AND NOT P`,
  which is a few rules: NOT P is the OR of the negations of P's criteria, each of which npol can
  say (a not-category, a flipped filter, or a positive category), and same-action rules OR.
- *pass in a profile* (npol: no verdict): the same rewrite inside the profile.
- *several address sets ANDed* (Felix: member of every set; npol ORs a category): one derived set,
  their intersection; the same for service sets (`dst_ip_port_set_ids`), which AND with the
  port/named-port group: a derived IP+port set.
- *not_icmp_type_code* (NOT(type AND code); npol's two filters would AND the negations): two rules.
- *family* (npol rules have none): a rule for one family gets a positive source CIDR `0.0.0.0/0`
  or `::/0` unless a positive CIDR list already pins it.
- *log rules*: dropped (npol would end the policy at a matching log rule).
- workload egress VXLAN/IPIP drops: a first policy; admin-down: deny everything.

Over 400 lines on purpose: the condition algebra (meet, negation) and the translation that needs
it are one piece of reasoning, checked together by the differential run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import product

from vppagent.policy.catalog import Catalog
from vppagent.policy.model import (
    ICMP,
    ICMPV6,
    UDP,
    Action,
    Direction,
    IPAddress,
    IPNetwork,
    PortRange,
    Rule,
    WorkloadEndpoint,
)
from vppagent.state.ipset import IPSetType
from vppagent.state.model import STAGED_KINDS

# npol enums (npol.api): actions, defaults, entry types, filter types
ALLOW, DENY, LOG, PASS = 0, 1, 2, 3
DEFAULT_ALLOW, DEFAULT_DENY, DEFAULT_PASS = 0, 1, 2
MAX_FILTERS = 3  # npol_rule_t.filters[3] on the wire
IPIP = 4


class MappingGap(ValueError):
    """A rule npol cannot express with this mapping (named in the message); the caller falls back."""


@dataclass(frozen=True, order=True)
class PortSetRef:
    """An IP+port set: the intersection of base sets `ids`, restricted to `ranges` (None: all ports)."""

    ids: frozenset[str]
    ranges: tuple[PortRange, ...] | None = None


@dataclass(frozen=True)
class PortGroup:
    """One side's port condition: port in any range OR (ip, proto, port) in any set."""

    ranges: tuple[PortRange, ...] = ()
    sets: tuple[PortSetRef, ...] = ()

    def union(self, other: PortGroup) -> PortGroup:
        return PortGroup(self.ranges + other.ranges, self.sets + other.sets)


@dataclass(frozen=True)
class Side:
    """One side (source or destination) of a condition. None = no constraint; an address set
    reference is a frozenset of base set ids meaning their intersection."""

    cidrs: tuple[IPNetwork, ...] | None = None
    not_cidrs: tuple[IPNetwork, ...] = ()
    sets: tuple[frozenset[str], ...] | None = None
    not_sets: tuple[frozenset[str], ...] = ()
    ports: PortGroup | None = None
    not_ports: PortGroup = PortGroup()


@dataclass(frozen=True)
class Cond:
    """A conjunction npol can say in one rule (filters + entries)."""

    proto: int | None = None
    not_protos: frozenset[int] = frozenset()
    icmp_type: int | None = None
    not_icmp_types: frozenset[int] = frozenset()
    icmp_code: int | None = None
    not_icmp_codes: frozenset[int] = frozenset()
    src: Side = Side()
    dst: Side = Side()

    def filter_count(self) -> int:
        return (sum(x is not None for x in (self.proto, self.icmp_type, self.icmp_code))
                + len(self.not_protos) + len(self.not_icmp_types) + len(self.not_icmp_codes))


@dataclass(frozen=True)
class NRule:
    action: int
    cond: Cond


@dataclass(frozen=True)
class NpolDirection:
    policies: tuple[tuple[NRule, ...], ...]  # in order; each one npol policy's rules for this direction
    policy_default: int
    profiles: tuple[tuple[NRule, ...], ...]
    profile_default: int


@dataclass(frozen=True)
class NpolEndpoint:
    """VPP's view: rx = traffic from the pod = Calico egress; tx = to the pod = ingress."""

    ingress: NpolDirection
    egress: NpolDirection

    def direction(self, d: Direction | str) -> NpolDirection:
        return self.ingress if Direction(d) is Direction.INGRESS else self.egress


# -- conjunction of two conditions --------------------------------------------------------------

def _meet_nets(a: tuple[IPNetwork, ...] | None, b: tuple[IPNetwork, ...] | None) -> tuple[IPNetwork, ...] | None:
    if a is None or b is None:
        return b if a is None else a
    out = []
    for x, y in product(a, b):
        if x.version == y.version:
            if x.subnet_of(y):  # type: ignore[arg-type]
                out.append(x)
            elif y.subnet_of(x):  # type: ignore[arg-type]
                out.append(y)
    return tuple(dict.fromkeys(out))


def _meet_ranges(a: Sequence[PortRange], b: Sequence[PortRange]) -> tuple[PortRange, ...]:
    out = [PortRange(max(x.first, y.first), min(x.last, y.last)) for x, y in product(a, b)]
    return tuple(r for r in out if r.first <= r.last)


def _restrict(s: PortSetRef, ranges: Sequence[PortRange]) -> PortSetRef | None:
    new = tuple(ranges) if s.ranges is None else _meet_ranges(s.ranges, ranges)
    return PortSetRef(s.ids, new) if new else None


def _meet_ports(a: PortGroup | None, b: PortGroup | None) -> PortGroup | None:
    if a is None or b is None:
        return b if a is None else a
    sets = [r for s in a.sets if (r := _restrict(s, b.ranges)) is not None]
    sets += [r for s in b.sets if (r := _restrict(s, a.ranges)) is not None]
    for x, y in product(a.sets, b.sets):
        ranges = x.ranges if y.ranges is None else (y.ranges if x.ranges is None else _meet_ranges(x.ranges, y.ranges))
        if ranges is None or ranges:
            sets.append(PortSetRef(x.ids | y.ids, ranges))
    return PortGroup(_meet_ranges(a.ranges, b.ranges), tuple(dict.fromkeys(sets)))


def _meet_side(a: Side, b: Side) -> Side:
    sets: tuple[frozenset[str], ...] | None
    if a.sets is None or b.sets is None:
        sets = b.sets if a.sets is None else a.sets
    else:
        sets = tuple(dict.fromkeys(x | y for x, y in product(a.sets, b.sets)))
    return Side(_meet_nets(a.cidrs, b.cidrs), a.not_cidrs + b.not_cidrs, sets, a.not_sets + b.not_sets,
                _meet_ports(a.ports, b.ports), a.not_ports.union(b.not_ports))


def _meet_value(a: int | None, b: int | None) -> tuple[bool, int | None]:
    if a is not None and b is not None and a != b:
        return False, None
    return True, a if a is not None else b


def meet(a: Cond, b: Cond) -> Cond | None:
    """a AND b, or None when nothing can match both (as far as this simple check sees)."""
    values = []
    for x, y in ((a.proto, b.proto), (a.icmp_type, b.icmp_type), (a.icmp_code, b.icmp_code)):
        ok, v = _meet_value(x, y)
        if not ok:
            return None
        values.append(v)
    c = Cond(values[0], a.not_protos | b.not_protos, values[1], a.not_icmp_types | b.not_icmp_types, values[2],
             a.not_icmp_codes | b.not_icmp_codes, _meet_side(a.src, b.src), _meet_side(a.dst, b.dst))
    if (c.proto in c.not_protos or c.icmp_type in c.not_icmp_types or c.icmp_code in c.not_icmp_codes
            or c.src.cidrs == () or c.dst.cidrs == () or c.src.sets == () or c.dst.sets == ()
            or c.src.ports == PortGroup() or c.dst.ports == PortGroup()):
        return None
    # a positive value makes the negations of other values redundant (and npol has 3 filter slots)
    return replace(c, not_protos=frozenset() if c.proto is not None else c.not_protos,
                   not_icmp_types=frozenset() if c.icmp_type is not None else c.not_icmp_types,
                   not_icmp_codes=frozenset() if c.icmp_code is not None else c.not_icmp_codes)


def negation(p: Cond) -> list[Cond]:
    """Conditions whose OR is exactly NOT p (each npol-expressible)."""
    icmp_filters = (p.icmp_type, p.icmp_code) != (None, None) or p.not_icmp_types or p.not_icmp_codes
    if icmp_filters and p.proto not in (ICMP, ICMPV6):  # a flipped ICMP filter alone misses non-ICMP packets
        raise MappingGap("negating an ICMP match needs the rule's protocol")
    out: list[Cond] = []
    if p.proto is not None:
        out.append(Cond(not_protos=frozenset({p.proto})))
    out += [Cond(proto=x) for x in p.not_protos]
    if p.icmp_type is not None:
        out.append(Cond(not_icmp_types=frozenset({p.icmp_type})))
    out += [Cond(icmp_type=x) for x in p.not_icmp_types]
    if p.icmp_code is not None:
        out.append(Cond(not_icmp_codes=frozenset({p.icmp_code})))
    out += [Cond(icmp_code=x) for x in p.not_icmp_codes]
    for name in ("src", "dst"):
        s: Side = getattr(p, name)
        parts: list[Side] = []
        if s.cidrs is not None:
            parts.append(Side(not_cidrs=s.cidrs))
        if s.not_cidrs:
            parts.append(Side(cidrs=s.not_cidrs))
        if s.sets is not None:
            parts.append(Side(not_sets=s.sets))
        if s.not_sets:
            parts.append(Side(sets=s.not_sets))
        if s.ports is not None:
            parts.append(Side(not_ports=s.ports))
        if s.not_ports != PortGroup():
            parts.append(Side(ports=s.not_ports))
        out += [Cond(**{name: part}) for part in parts]  # type: ignore[arg-type]
    return out


def except_regions(rule: NRule, regions: Sequence[Cond], limit: int) -> list[NRule]:
    """rule AND NOT r1 AND NOT r2 ..., as same-action rules."""
    conds = [rule.cond]
    for region in dict.fromkeys(regions):  # the same pass twice (several policies) excepts once
        conds = list(dict.fromkeys(m for c in conds for n in negation(region) if (m := meet(c, n)) is not None))
        if len(conds) > limit:
            raise MappingGap(f"pass exceptions need over {limit} rules")
    return [NRule(rule.action, c) for c in conds]


# -- one Felix rule -> conditions ---------------------------------------------------------------

def _family_pin(family: int) -> tuple[IPNetwork, ...]:
    return (ipaddress.ip_network("0.0.0.0/0") if family == 4 else ipaddress.ip_network("::/0"),)


def translate(rule: Rule) -> list[Cond]:
    """Conditions whose OR is the rule's match (empty: never matches)."""
    families = rule.families()
    if not families:
        return []
    icmp_type: int | None = None
    icmp_code: int | None = None
    if rule.icmp is not None:
        icmp_type, icmp_code = rule.icmp.type, rule.icmp.code
    not_icmp: list[tuple[frozenset[int], frozenset[int]]] = [(frozenset(), frozenset())]
    if rule.not_icmp is not None:
        t, c = rule.not_icmp.type, rule.not_icmp.code
        if icmp_type is not None and icmp_code is not None:  # decided statically
            if icmp_type == t and (c is None or icmp_code == c):
                return []
        elif icmp_type is not None:
            if icmp_type == t:
                if c is None:
                    return []
                not_icmp = [(frozenset(), frozenset({c}))]
        elif c is None:
            not_icmp = [(frozenset({t}), frozenset())]
        else:  # NOT(type == t AND code == c) = type != t OR code != c
            not_icmp = [(frozenset({t}), frozenset()), (frozenset(), frozenset({c}))]

    def sets(ids: Sequence[str]) -> tuple[frozenset[str], ...] | None:
        return (frozenset(ids),) if ids else None

    src_ports = (PortGroup(rule.src_ports, tuple(PortSetRef(frozenset({s})) for s in rule.src_named_port_sets))
                 if rule.src_ports or rule.src_named_port_sets else None)
    dst_ports = (PortGroup(rule.dst_ports, tuple(PortSetRef(frozenset({s})) for s in rule.dst_named_port_sets))
                 if rule.dst_ports or rule.dst_named_port_sets else None)
    if rule.dst_ip_port_sets:  # service sets AND each other and the port group
        dst_ports = _meet_ports(dst_ports, PortGroup((), (PortSetRef(frozenset(rule.dst_ip_port_sets)),)))
    src = Side(rule.src_nets or None, rule.not_src_nets, sets(rule.src_ip_sets),
               tuple(frozenset({s}) for s in rule.not_src_ip_sets), src_ports,
               PortGroup(rule.not_src_ports, tuple(PortSetRef(frozenset({s})) for s in rule.not_src_named_port_sets)))
    dst = Side(rule.dst_nets or None, rule.not_dst_nets, sets(rule.dst_ip_sets),
               tuple(frozenset({s}) for s in rule.not_dst_ip_sets), dst_ports,
               PortGroup(rule.not_dst_ports, tuple(PortSetRef(frozenset({s})) for s in rule.not_dst_named_port_sets)))
    if len(families) == 1 and src.cidrs is None and dst.cidrs is None:
        src = replace(src, cidrs=_family_pin(families[0]))
    not_protos = frozenset({rule.not_protocol}) if rule.not_protocol is not None else frozenset()
    out = [Cond(rule.protocol, not_protos, icmp_type, nt, icmp_code, nc, src, dst) for nt, nc in not_icmp]
    return [c for c in out if meet(c, Cond()) is not None]


_ACTIONS = {Action.ALLOW: ALLOW, Action.DENY: DENY, Action.PASS: PASS}


def _map_rules(rules: Iterable[Rule], regions: list[Cond], pass_leaves: bool, limit: int) -> list[NRule]:
    """Rules of one tier's policy (or one profile), after the tier's earlier pass `regions` (which
    grow). `pass_leaves`: a pass rule stays a pass (npol: to the profiles); else it is left out and
    the later rules get its region excepted."""
    out: list[NRule] = []
    for rule in rules:
        if rule.action is Action.LOG:
            continue
        conds = translate(rule)
        if rule.action is Action.PASS and not pass_leaves:
            regions.extend(conds)
            continue
        for c in conds:
            out += except_regions(NRule(_ACTIONS[rule.action], c), regions, limit)
    return out


def _encap_drops(cat: Catalog) -> tuple[NRule, ...]:
    drops = []
    if not cat.config_bool("AllowVXLANPacketsFromWorkloads"):
        vxlan = PortGroup((PortRange(cat.vxlan_port, cat.vxlan_port),))
        drops.append(NRule(DENY, Cond(proto=UDP, dst=Side(ports=vxlan))))
    if not cat.config_bool("AllowIPIPPacketsFromWorkloads"):
        drops.append(NRule(DENY, Cond(proto=IPIP)))
    return tuple(drops)


def map_direction(cat: Catalog, ep: WorkloadEndpoint, direction: Direction, limit: int = 2000,
                  flat_tiers: bool = False) -> NpolDirection:
    """`flat_tiers`: Calico VPP's own way, for comparison: every pass goes to the profiles, tiers'
    default actions ignored, deny when any policy applies (calico-vpp-agent workload_endpoint.go)."""
    if flat_tiers:
        return _flat_tiers(cat, ep, direction, limit)
    if not ep.active:
        return NpolDirection((), DEFAULT_DENY, (), DEFAULT_DENY)
    policies: list[tuple[NRule, ...]] = []
    if direction is Direction.EGRESS and (drops := _encap_drops(cat)):
        policies.append(drops)
    live_tiers = [(t, [k for k in t.policies(direction) if k.kind not in STAGED_KINDS]) for t in ep.tiers]
    live_tiers = [(t, keys) for t, keys in live_tiers if keys]  # no policy, or only staged ones: skipped
    policy_default = DEFAULT_PASS
    for index, (tier, keys) in enumerate(live_tiers):
        last = index == len(live_tiers) - 1
        regions: list[Cond] = []
        for key in keys:
            policies.append(tuple(_map_rules(cat.policy(key).rules(direction), regions, last, limit)))
        if not tier.ends_with_pass:
            if last:
                policy_default = DEFAULT_DENY
            else:
                policies.append(tuple(except_regions(NRule(DENY, Cond()), regions, limit)))
    profiles = []
    for name in ep.profile_ids:
        profiles.append(tuple(_map_rules(cat.profile(name).rules(direction), [], False, limit)))
    return NpolDirection(tuple(p for p in policies if p), policy_default, tuple(p for p in profiles if p),
                         DEFAULT_DENY)


def _flat_tiers(cat: Catalog, ep: WorkloadEndpoint, direction: Direction, limit: int) -> NpolDirection:
    keys = [k for t in ep.tiers for k in t.policies(direction) if k.kind not in STAGED_KINDS]
    policies = tuple(tuple(_map_rules(cat.policy(k).rules(direction), [], True, limit)) for k in keys)
    profiles = tuple(tuple(_map_rules(cat.profile(n).rules(direction), [], False, limit)) for n in ep.profile_ids)
    return NpolDirection(tuple(p for p in policies if p), DEFAULT_DENY if keys else DEFAULT_PASS,
                         tuple(p for p in profiles if p), DEFAULT_DENY)


def map_endpoint(cat: Catalog, endpoint: object, limit: int = 2000, flat_tiers: bool = False) -> NpolEndpoint:
    ep = cat.workload(endpoint)  # type: ignore[arg-type]
    return NpolEndpoint(map_direction(cat, ep, Direction.INGRESS, limit, flat_tiers),
                        map_direction(cat, ep, Direction.EGRESS, limit, flat_tiers))


# -- the IP sets the rules need -----------------------------------------------------------------

@dataclass(frozen=True)
class NSet:
    """An npol IP set: type IP (members: /32 or /128 networks), NET, or IP_AND_PORT ((ip, proto, port))."""

    type: IPSetType
    members: tuple[object, ...]


def address_set(cat: Catalog, ids: frozenset[str]) -> NSet:
    """One base set as it is, or the intersection of several (NET: pairwise prefix intersections)."""
    parsed = [cat.ipset(i) for i in sorted(ids)]
    if len(parsed) == 1:
        return NSet(parsed[0].type, parsed[0].nets)
    nets: tuple[IPNetwork, ...] | None = None
    for p in parsed:
        nets = _meet_nets(nets, p.nets)
    found: set[IPNetwork] = set(nets) if nets is not None else set()
    ordered: list[IPNetwork] = sorted(found, key=_net_order)
    return NSet(IPSetType.NET, tuple(ordered))


def port_set(cat: Catalog, ref: PortSetRef) -> NSet:
    tuples: frozenset[tuple[IPAddress, int, int]] | None = None
    for i in sorted(ref.ids):
        members = cat.ipset(i).ip_ports
        tuples = members if tuples is None else tuples & members
    members_all: frozenset[tuple[IPAddress, int, int]] = tuples if tuples is not None else frozenset()
    chosen = [t for t in members_all if ref.ranges is None or any(t[2] in r for r in ref.ranges)]
    ordered: list[tuple[IPAddress, int, int]] = sorted(chosen, key=lambda t: (t[0].version, int(t[0]), t[1], t[2]))
    return NSet(IPSetType.IP_AND_PORT, tuple(ordered))


def _net_order(n: IPNetwork) -> tuple[int, int, int]:
    return n.version, int(n.network_address), n.prefixlen


def set_refs(program: NpolEndpoint) -> tuple[set[frozenset[str]], set[PortSetRef]]:
    """Every address-set and IP+port-set reference in the program."""
    addr: set[frozenset[str]] = set()
    ports: set[PortSetRef] = set()
    for d in (program.ingress, program.egress):
        for body in (*d.policies, *d.profiles):
            for rule in body:
                for side in (rule.cond.src, rule.cond.dst):
                    addr.update(side.sets or ())
                    addr.update(side.not_sets)
                    for group in (side.ports, side.not_ports):
                        if group is not None:
                            ports.update(group.sets)
    return addr, ports
