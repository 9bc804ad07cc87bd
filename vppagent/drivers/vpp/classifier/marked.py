"""The gate's plan with source-port markers (gate.py): one compile gives L_0 and every L_i.

The analysis list A is the list with every chosen set = every address, each allow rule from the
k-th chosen set matching only source port M_k = k + 1 (aliases.mark_sources; never programmed).
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

from collections.abc import Set as AbstractSet

from vppagent.drivers.vpp.classifier.aliases import mark_sources, split_ports
from vppagent.drivers.vpp.classifier.plan import Drop, Plan, Regions, gap_entries
from vppagent.drivers.vpp.classifier.regions import Slice, Unfit, View, denied_in, marked_region
from vppagent.drivers.vpp.classifier.source import ANY, candidates, policy_names, rules, with_members
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.model import TCP, UDP, Action, Direction, WorkloadEndpoint
from vppagent.state.model import DataplaneState


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
    set at once (aliases.split_ports), and the plan is made again once."""
    names = policy_names(ep, direction)
    for may_split in (True, False):
        chosen = _chosen(catalog, state, ep, direction, min_members, excluded)
        if not chosen:
            return None
        markers = {s: k + 1 for k, s in enumerate(chosen)}
        held = mark_sources(with_members(state, dict.fromkeys(chosen, ANY)), names, markers)
        analysis = View.of(compile_endpoint(held, ep, direction, rule_limit=rule_limit, cache=cache))
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
        catalog = Catalog(state)
    universe = compile_endpoint(with_members(state, dict.fromkeys(chosen, ANY)), ep, direction,
                                rule_limit=rule_limit, cache=cache)
    return Plan(state, chosen, regions, empty, lambda s: Slice.at(analysis, markers[s], values), universe)


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
