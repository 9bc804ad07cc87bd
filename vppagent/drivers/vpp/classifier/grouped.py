"""The gate's plan for a list where some rule names a source port (no markers, gate.py): L_i is
compiled once per group of gated sets whose regions R_i are pairwise disjoint (on R_i the
group's other sets match nothing, so the group's list equals L_i there), at most MAX_GROUPS
groups; R_i is compiled from the set's rules alone."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from vppagent.drivers.vpp.classifier.aliases import split_ports
from vppagent.drivers.vpp.classifier.plan import Plan, Regions, gap_entries
from vppagent.drivers.vpp.classifier.regions import Unfit, View, denied_in, disjoint
from vppagent.drivers.vpp.classifier.source import ANY, candidates, policy_names, with_members
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.boxes import full_box
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, Tier, WorkloadEndpoint
from vppagent.state.model import STAGED_KINDS, DataplaneState, Kind, PolicyKey

MAX_GROUPS = 16
REGION_POLICY = "__vppagent_gated_rules"


def grouped_plan(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                 min_members: int, rule_limit: int, cache: CompileCache | None,
                 excluded: AbstractSet[str]) -> Plan | None:
    conflicts, regions = _candidate_regions(catalog, state, ep, direction, min_members, rule_limit, cache,
                                            excluded)
    unfit = _unfit_ports(state, ep, direction, regions, rule_limit, cache)
    if unfit:  # those ports of those sets stay in the ACL: their rules name another alias
        state, _ = split_ports(state, policy_names(ep, direction), unfit)
        catalog = Catalog(state)
        conflicts, regions = _candidate_regions(catalog, state, ep, direction, min_members, rule_limit, cache,
                                                excluded)
    groups = _groups(regions, conflicts)
    if not groups:
        return None
    chosen = [s for g in groups for s in g]

    def compiled(any_of: Iterable[str]) -> CompiledList:
        wide = set(any_of)
        held = with_members(state, {s: ANY if s in wide else () for s in chosen})
        return compile_endpoint(held, ep, direction, rule_limit=rule_limit, cache=cache)

    universe = compiled(chosen)
    views: dict[int, View] = {}
    group_of = {s: i for i, g in enumerate(groups) for s in g}

    def own(set_id: str) -> View:
        i = group_of[set_id]
        if i not in views:
            views[i] = View.of(universe if len(groups) == 1 else compiled(groups[i]))
        return views[i]

    order = [s for s in regions if s in group_of]  # heaviest first
    return Plan(state, order, {s: regions[s] for s in order}, View.of(compiled(())), own, universe)


def _candidate_regions(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                       min_members: int, rule_limit: int, cache: CompileCache | None,
                       excluded: AbstractSet[str]) -> tuple[set[frozenset[str]], dict[str, Regions]]:
    """The candidates' conflicts and regions, heaviest first (those with a region only)."""
    weights, conflicts = candidates(catalog, state, ep, direction, min_members)
    regions: dict[str, Regions] = {}
    for set_id in sorted(weights, key=lambda s: (-weights[s], s)):
        if set_id in excluded:
            continue
        try:
            region = _region(state, ep, direction, set_id, rule_limit, cache)
        except Unfit:
            continue
        if region:
            regions[set_id] = region
    return conflicts, regions


def _unfit_ports(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, regions: dict[str, Regions],
                 rule_limit: int, cache: CompileCache | None) -> dict[str, list[tuple[int, int, int]]]:
    """Per candidate, the destination-port ranges of its region's boxes whose drop region (with
    every candidate empty) the classifier cannot hold: e.g. a port where L_0 allows ragged
    destinations (named ports), or a non-service port."""
    if not regions:
        return {}
    empty = View.of(compile_endpoint(with_members(state, dict.fromkeys(regions, ())), ep, direction,
                                     rule_limit=rule_limit, cache=cache))
    out: dict[str, list[tuple[int, int, int]]] = {}
    for set_id, region in regions.items():
        for family, boxes in region.items():
            for box in boxes:
                try:
                    gap_entries(family, denied_in(empty, family, [box]))
                except Unfit:
                    proto = box.proto_lo if box.proto_lo == box.proto_hi else 0
                    out.setdefault(set_id, []).append((proto, box.b_lo, box.b_hi))
    return out


def _groups(regions: dict[str, Regions], conflicts: set[frozenset[str]]) -> list[list[str]]:
    """Sets (heaviest first, as `regions` is ordered) into at most MAX_GROUPS groups of pairwise
    disjoint regions; a set that fits nowhere, or shares a rule with a chosen one, stays in the ACL."""
    groups: list[list[str]] = []
    chosen: list[str] = []
    for set_id in regions:
        if any(frozenset((set_id, c)) in conflicts for c in chosen):
            continue
        home = next((g for g in groups if all(_disjoint(regions[set_id], regions[o]) for o in g)), None)
        if home is None:
            if len(groups) == MAX_GROUPS:
                continue
            home = []
            groups.append(home)
        home.append(set_id)
        chosen.append(set_id)
    return groups


def _disjoint(a: Regions, b: Regions) -> bool:
    return all(disjoint(a[f], b[f], f) for f in a if f in b)


def _region(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, set_id: str,
            rule_limit: int, cache: CompileCache | None) -> Regions:
    """R_i: where the set's rules match when the set is every address, per family (a small list)."""
    rules = []
    for tier in ep.tiers:
        for key in tier.policies(direction):
            pb = state.policies.get(key)
            if pb is not None and key.kind not in STAGED_KINDS:
                rules += [r for r in pb.inbound_rules if set_id in r.src_ip_set_ids]
    for name in ep.profile_ids:
        rules += [r for r in state.profiles[name].inbound_rules if set_id in r.src_ip_set_ids]
    synthetic = with_members(state, {set_id: ANY})
    key = PolicyKey(REGION_POLICY, "", "")
    synthetic.tables[Kind.POLICY][key] = felix.Policy(inbound_rules=rules)
    only = WorkloadEndpoint(ep.key, ep.name, True, (), (), (), (Tier("region", (key,), (), "Deny"),))
    region = View.of(compile_endpoint(synthetic, only, direction, rule_limit=rule_limit, cache=cache))
    out = {f: region.allowed(f, full_box()) for f in (4, 6)}
    return {f: boxes for f, boxes in out.items() if boxes}
