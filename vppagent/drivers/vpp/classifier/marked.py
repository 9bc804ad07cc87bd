"""The gate's plan with source-port markers (gate.py): one compile gives L_0 and every L_i.

The analysis list A is the list with every chosen set = every address, each allow rule from the
k-th chosen set matching only source port M_k (aliases.mark_sources; never programmed), a port
fixed by the set's name (`markers_for`), so that a policy's marked rules are the same in every
list that gates its sets and their boxes come from the compile cache (policy/cache.py).
When no rule of the list names a source port (`markable`), every other rule matches a packet
whatever its source port. So for a TCP/UDP packet p, with p_k = p with source port M_k:
A(p_k) = L_k(p) (set k's rules match p_k as they match p in L_k, the other sets' rules match no
p_k, the rest as for p), and at a port that is no marker A(p) = L_0(p). The compiler is exact
(its list gives the evaluator's verdict for every packet), so its list for A read at M_k, with
any source port (regions.Slice), is L_k, and read at no marker it is L_0: one compile instead of
one per group of sets with disjoint regions. R_k is where the rules with source port M_k match
in A's list (boxes with M_k): where L_k allows and L_0 does not, the first matching rule of A at
p_k is one of them (one of L_0's would decide p the same way in L_0), which is all D_k needs.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from vppagent.drivers.vpp.classifier.aliases import mark_sources, split_ports
from vppagent.drivers.vpp.classifier.plan import Drop, Plan, Regions, gap_entries
from vppagent.drivers.vpp.classifier.regions import Slice, Unfit, View, denied_in, marked_region, rule_box
from vppagent.drivers.vpp.classifier.source import ANY, candidates, policy_names, rules, with_members
from vppagent.policy.boxes import FULL_L4, Box
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import TCP, UDP, Action, Direction, PortRange, WorkloadEndpoint
from vppagent.state.model import STAGED_KINDS, DataplaneState

RAGGED = 32  # named-port destinations allowed on one port beyond which its drop region is not tried


def markable(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> bool:
    """No rule of the list names a source port (log rules do not count: the compiler skips them)."""
    return not any(r.src_ports or r.not_src_ports or r.src_named_port_sets or r.not_src_named_port_sets
                   for r in rules(catalog, ep, direction) if r.action is not Action.LOG)


def marked_plan(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                min_members: int, rule_limit: int, cache: CompileCache | None,
                excluded: AbstractSet[str]) -> Plan | None:
    """Every candidate goes in at once, heaviest first (one of two sets sharing a rule), so that
    L_0 holds no member of another candidate where they share ports. Ports where a drop region
    does not fit (e.g. where L_0 allows single destinations) go back to the ACL for every chosen
    set at once (aliases.split_ports): those `ragged_ports` predicts before the one compile,
    any other found unfit after it, and then the plan is made again once."""
    names = policy_names(ep, direction)
    chosen = _chosen(catalog, state, ep, direction, min_members, excluded)
    ragged = ragged_ports(catalog, ep, direction, chosen)
    if not _port_left(catalog, ep, direction, chosen, ragged):
        return None  # (without a compile: every port of every chosen set would be split off)
    if ragged:
        state, _ = split_ports(state, names, dict.fromkeys(chosen, ragged))
        catalog = catalog.derived(state, *names)
    for may_split in (True, False):
        chosen = _chosen(catalog, state, ep, direction, min_members, excluded)
        if not chosen:
            return None
        markers = markers_for(chosen)
        held = mark_sources(with_members(state, dict.fromkeys(chosen, ANY)), names, markers)
        compiled = compile_endpoint(held, ep, direction, rule_limit=rule_limit, cache=cache)
        analysis = View.of(compiled)
        values = frozenset(markers.values())
        empty = Slice.at(analysis, None, values)
        regions: dict[str, Regions] = {}
        unfit: set[tuple[int, int, int]] = set()
        for set_id in chosen:
            try:
                regions[set_id] = {f: boxes for f in (4, 6) if (boxes := marked_region(analysis, f, markers[set_id]))}
            except Unfit as exc:
                raise Drop((set_id,), str(exc)) from exc
            for family, boxes in regions[set_id].items():
                for box in boxes:
                    try:
                        gap_entries(family, denied_in(empty, family, [box]))
                    except Unfit:
                        unfit.add((box.proto_lo if box.proto_lo == box.proto_hi else 0, box.b_lo, box.b_hi))
        if not (unfit and may_split):
            break
        state, _ = split_ports(state, names, dict.fromkeys(chosen, sorted(unfit)))
        catalog = catalog.derived(state, *names)
    # (compiled lists hold the IPv4 rules, then the IPv6 ones: policy/emit.combine)
    read = _universe(compiled, [b for f in (4, 6) for b, _ in analysis.rules[f]], values)
    universe_boxes: list[Box] | None = None
    if read is not None:
        universe, universe_boxes = read
    else:
        universe = compile_endpoint(with_members(state, dict.fromkeys(chosen, ANY)), ep, direction,
                                    rule_limit=rule_limit, cache=cache)
    return Plan(state, chosen, regions, empty, lambda s: Slice.at(analysis, markers[s], values), universe,
                universe_boxes)


def markers_for(chosen: Iterable[str]) -> dict[str, int]:
    """Each chosen set's marker: a source port fixed by its name, or on a clash with a set
    before it in `chosen` the next free port. Any distinct ports will do (no rule of a markable
    list names a source port); fixed ones make the same rule get the same marker in every
    list, so its boxes are computed once (policy/cache.py), not once per list."""
    out: dict[str, int] = {}
    taken: set[int] = set()
    for set_id in chosen:
        port = zlib.crc32(set_id.encode()) % FULL_L4[1] + 1
        while port in taken:
            port = port % FULL_L4[1] + 1
        taken.add(port)
        out[set_id] = port
    return out


def universe_of(analysis: CompiledList, markers: AbstractSet[int]) -> CompiledList | None:
    """L_U read off A's compiled list X: each rule whose source port is a marker made to match
    any source port (and repeats dropped: a later copy never matches first). None when a TCP/UDP
    rule has a source port range that is neither any port nor a marker, or a marked rule is a deny
    (a gated allow with a negated destination compiles to those): L_U is compiled then.

    Exact: let r be the first rule of X matching a packet p. If r had marker M_k, no rule before
    it matches p_k in A (the unmarked ones match any source port, the other marked ones another
    port), so A(p_k) = L_k(p) = allow (marked rules are allow rules), and L_k <= L_U. If r is
    unmarked, A reaches r first at p with any port that is no marker and at every p_k, so
    L_0(p) = L_k(p) = r's action for every k; with no rule matching, all of them are the
    default. And L_U = L_0 or L_1 or ... or L_k for every packet (the gate's identity, gate.py,
    with every gated set = every address: no two gated sets share a rule), so X(p) = L_U(p).
    Tested against the compiled L_U in tests/vpp/test_gate_universe.py."""
    read = _universe(analysis, [rule_box(r) for r in analysis.rules], markers)
    return None if read is None else read[0]


def _universe(analysis: CompiledList, boxes: list[Box],
              markers: AbstractSet[int]) -> tuple[CompiledList, list[Box]] | None:
    """universe_of, from the rules' boxes (regions.rule_box, in order: a View has them), and
    the boxes of L_U's rules (prune.py reads them)."""
    full = PortRange(*FULL_L4)
    out: list[FlatRule] = []
    out_boxes: list[Box] = []
    seen: set[tuple[object, ...]] = set()  # of the rules that had a marker (the others are no repeats:
    for rule, box in zip(analysis.rules, boxes, strict=True):  # the compiler drops those)
        sport = rule.srcport_or_icmptype
        if rule.proto in (TCP, UDP) and (sport.first, sport.last) != FULL_L4:
            if sport.first != sport.last or sport.first not in markers:
                return None
            if not rule.is_permit:  # a gated allow's negated destination compiles to a marked deny:
                return None  # widened, it would shadow other sets' allows (the proof needs allows)
            dport = rule.dstport_or_icmpcode
            key = (rule.family, rule.src, rule.dst, rule.proto, dport.first, dport.last)
            if key in seen:
                continue
            seen.add(key)
            rule = FlatRule(rule.action, rule.family, rule.src, rule.dst, rule.proto, full, dport, rule.origin)
            box = box._replace(a_lo=FULL_L4[0], a_hi=FULL_L4[1])
        out.append(rule)
        out_boxes.append(box)
    return dataclasses.replace(analysis, rules=tuple(out)), out_boxes


def ragged_ports(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction,
                 chosen: Iterable[str]) -> list[tuple[int, int, int]]:
    """(protocol or 0 for any, first port, last port) where L_0 is predicted ragged: where allow
    rules of the list admit more than RAGGED destinations of named-port sets, or admit the IPv4
    members of address sets none of which is chosen (only IPv4 is gated: source.ANY). L_0
    allows those single addresses (a set's
    aggregated prefixes), which cuts a drop region there into a piece per prefix length, more
    shapes than gap tables hold, so those ports would be found unfit after a compile and split
    off; predicting them saves that compile (or, when no port is left, every compile). Only the
    tiers' rules are read: a profile's are often behind an end-of-tier deny. A port this misses
    is still found unfit (marked_plan); one it names needlessly only stays in the ACL."""
    gated = set(chosen)
    destinations: dict[tuple[int, int], set[object]] = defaultdict(set)
    ranges: set[tuple[int, int, int]] = set()
    for rule in (r for t in ep.tiers for k in t.policies(direction) if k.kind not in STAGED_KINDS
                 for r in catalog.policy(k).rules(direction)):
        if rule.action is not Action.ALLOW:
            continue
        for set_id in (*rule.dst_named_port_sets, *rule.dst_ip_port_sets):
            for address, proto, port in catalog.ipset(set_id).ip_ports:
                destinations[(proto, port)].add(address)
        if rule.src_ip_sets and not gated & set(rule.src_ip_sets) and rule.ip_version != 6 and \
                all(any(n.version == 4 for n in catalog.ipset(s).nets) for s in rule.src_ip_sets):
            if rule.protocol is not None and rule.protocol not in (TCP, UDP):
                continue  # (no TCP/UDP packet: no drop region meets it)
            proto = rule.protocol if rule.protocol in (TCP, UDP) and rule.not_protocol is None else 0
            ranges |= {(proto, p.first, p.last) for p in rule.dst_ports} or {(proto, 0, FULL_L4[1])}
    ranges |= {(proto, port, port) for (proto, port), found in destinations.items() if len(found) > RAGGED}
    return sorted(ranges)


def _port_left(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction, chosen: Iterable[str],
               ragged: list[tuple[int, int, int]]) -> bool:
    """Whether an allow rule from a chosen set keeps a destination port outside `ragged`."""
    gated = set(chosen)
    for rule in rules(catalog, ep, direction):
        if rule.action is Action.ALLOW and gated & set(rule.src_ip_sets):
            proto = rule.protocol or 0
            cuts = [(lo, hi) for p, lo, hi in ragged if not (p and proto and p != proto)]
            for ports in rule.dst_ports or (PortRange(*FULL_L4),):
                if not any(lo <= ports.first and ports.last <= hi for lo, hi in cuts):
                    return True  # (also one partly inside: a guess either way only costs time)
    return False


def _chosen(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
            min_members: int, excluded: AbstractSet[str]) -> list[str]:
    """The candidates, heaviest first, but for those sharing a rule with a heavier one, and
    those with an allow rule that is not TCP or UDP (a marker is a port)."""
    weights, conflicts = candidates(catalog, state, ep, direction, min_members)
    other = {s for r in rules(catalog, ep, direction) if r.action is Action.ALLOW
             and (r.protocol not in (TCP, UDP) or r.not_protocol is not None) for s in r.src_ip_sets}
    chosen: list[str] = []
    for set_id in sorted(weights, key=lambda s: (-weights[s], s)):
        if set_id in excluded or set_id in other or any(frozenset((set_id, c)) in conflicts for c in chosen):
            continue
        chosen.append(set_id)
    return chosen
