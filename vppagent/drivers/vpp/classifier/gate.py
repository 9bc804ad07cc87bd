"""Which IP sets of an ingress list move to the classifier (a gate), and what the classifier must
then hold: per gated set the region where its members are admitted, and the drop region.

Candidates: address sets used in the list only as the source of allow rules, with at least
`min_members` members, no two of them in one rule; a set is gated when its drop region D_i (below)
is TCP/UDP to destination ports below EPHEMERAL_START with any source port, and small enough. Let L_U be the
list with every gated set = every address, L_0 with every gated set = no address, and L_i with
set i = every address and the other gated sets empty. Then, for every packet p:

    L(p) = allow  iff  L_0(p) = allow, or for some gated set i: src(p) in S_i and L_i(p) = allow

(L is monotone in each gated set; the first rule of L that allows p while L_0 denies it is a rule
of one gated set i, and nothing before it matches in L_i either). So the ACL gets L_U and the
classifier chain: admit sessions (member of S_i x P_i, P_i = L_i allows and L_0 denies) ->
permit; gap sessions (D = union of D_i, D_i = R_i minus what L_0 allows, R_i the region of set i's
rules) -> drop; miss -> permit. Full argument, and why regions need not be disjoint:
docs/vpp-driver.md, "Large IP sets".

Allow rules are rewritten to name aliases of their sets (same members, so the same list;
aliases.py): a set also used otherwise (the source of a deny, a negation) is gated in its allow
rules only; and the ports where a set's drop region does not fit the classifier (e.g. where named
ports make L_0 ragged) are split off its rules, to an alias that stays in the ACL.

L_i is computed per group of gated sets whose regions are pairwise disjoint (on R_i the other
sets of the group do not match, so the group's list equals L_i there): one compile per group,
at most MAX_GROUPS; the MAX_CANDIDATES heaviest candidates are tried. Bounds per (gate, family):
MAX_GAP_SESSIONS drop sessions, MAX_GAP_TABLES gap tables and MAX_PERMIT_TABLES admit tables
(each table is one hash lookup per packet).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from vppagent.drivers.vpp.classifier.aliases import REST, alias_allow_sources, mark_sources, real_set, split_ports
from vppagent.drivers.vpp.classifier.regions import (
    EPHEMERAL_START,
    Basis,
    Domain,
    GapEntry,
    Unfit,
    View,
    allowed_in,
    basis,
    denied_in,
    disjoint,
    domain,
    entries,
    member_entries,
    port_blocks,
    sliced,
)
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.boxes import Box, full_box
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import TCP, UDP, Action, Direction, IPNetwork, Rule, Tier, WorkloadEndpoint
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import STAGED_KINDS, DataplaneState, Kind, PolicyKey

__all__ = ["EPHEMERAL_START", "GapEntry", "Gate", "GatedSet", "gated_lists", "port_blocks"]

MAX_GAP_SESSIONS = 1024
MAX_GAP_TABLES = 8
MAX_PERMIT_TABLES = 8
MAX_GROUPS = 16
MAX_CANDIDATES = 256  # one small compile each (its region): the heaviest are tried
MAX_ATTEMPTS = 3
MEMBER_WISE = False  # tests set it: every P_i worked out per member (the path ragged regions take)
REGION_POLICY = "__vppagent_gated_rules"
ANY = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class GatedSet:
    """One gated set and where its members are admitted (P_i, as classifier entries). In the
    families of `everywhere`, P_i is the whole drop region: a member is then admitted by its
    source address alone (one session per member, not one per member and entry)."""

    set_id: str
    admits: tuple[GapEntry, ...]
    everywhere: tuple[int, ...] = ()
    # Where P_i is too ragged to hold as entries (earlier denies of single addresses cut it):
    # per family, what decides it (regions.Basis); the sessions are then worked out per member.
    basis: tuple[tuple[int, Basis], ...] = ()


@dataclass(frozen=True)
class Gate:
    """The classifier side of a gated list: the gated sets and the drop region D."""

    sets: tuple[GatedSet, ...]
    gaps: tuple[GapEntry, ...]

    def families(self) -> list[int]:
        return sorted({g.family for g in self.gaps})

    @property
    def set_ids(self) -> tuple[str, ...]:
        return tuple(s.set_id for s in self.sets)


Regions = dict[int, list[Box]]  # family -> boxes


class _Drop(Exception):
    def __init__(self, set_ids: Iterable[str], why: str) -> None:
        self.set_ids = frozenset(set_ids)
        super().__init__(f"{sorted(self.set_ids)}: {why}")


def gated_lists(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                rule_limit: int, min_members: int,
                cache: CompileCache | None = None) -> tuple[CompiledList, Gate] | None:
    """(L_U, gate) when some sets qualify, else None (compile the list the ordinary way). With
    `cache`, the compiles share fragments with every other list (policy/cache.py)."""
    if direction is not Direction.INGRESS or not ep.active:
        return None
    on = domain((*ep.ipv4_nets, *ep.ipv6_nets))
    state, aliases = alias_allow_sources(state, _rules(catalog, ep, direction), _policy_names(ep, direction))
    if aliases:
        catalog = Catalog(state)
    conflicts, regions = _candidate_regions(catalog, state, ep, direction, min_members, rule_limit, on, cache)
    unfit = _unfit_ports(state, ep, direction, regions, rule_limit, on, cache)
    if unfit:  # those ports of those sets stay in the ACL: their rules name another alias
        state, more = split_ports(state, _policy_names(ep, direction), unfit)
        aliases |= more
        catalog = Catalog(state)
        conflicts, regions = _candidate_regions(catalog, state, ep, direction, min_members, rule_limit, on, cache)
    marked = markable(catalog, ep, direction)
    groups = _groups(regions, conflicts, together=marked)
    for _ in range(MAX_ATTEMPTS):
        if not groups:
            return None
        try:
            built = _build(state, ep, direction, groups, regions, rule_limit, on, cache, marked)
            if built is None or not aliases:
                return built
            universe, gate = built
            sets = tuple(replace(g, set_id=real_set(g.set_id)) for g in gate.sets)
            return universe, Gate(tuple(sorted(sets, key=lambda g: g.set_id)), gate.gaps)
        except _Drop as drop:
            groups = [kept for g in groups if (kept := [s for s in g if s not in drop.set_ids])]
    return None


def markable(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> bool:
    """Whether one marked compile gives every L_i (module docstring, "markers"): no rule of the
    list names a source port, and every allow rule from an address set is TCP or UDP."""
    for rule in _rules(catalog, ep, direction):
        if rule.action is Action.LOG:
            continue
        if rule.src_ports or rule.not_src_ports or rule.src_named_port_sets or rule.not_src_named_port_sets:
            return False
        if rule.action is Action.ALLOW and rule.src_ip_sets and (rule.protocol not in (TCP, UDP)
                                                                 or rule.not_protocol is not None):
            return False
    return True


def _policy_names(ep: WorkloadEndpoint, direction: Direction) -> tuple[list[PolicyKey], list[str]]:
    return [k for t in ep.tiers for k in t.policies(direction) if k.kind not in STAGED_KINDS], list(ep.profile_ids)


def _candidate_regions(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                       min_members: int, rule_limit: int, on: Domain,
                       cache: CompileCache | None) -> tuple[set[frozenset[str]], dict[str, Regions]]:
    """The candidates' conflicts and regions, heaviest first (those with a region only)."""
    weights, conflicts = _candidates(catalog, state, ep, direction, min_members)
    regions: dict[str, Regions] = {}
    for set_id in sorted(weights, key=lambda s: (-weights[s], s)):
        try:
            region = _region(state, ep, direction, set_id, rule_limit, on, cache)
        except Unfit:
            continue
        if region:
            regions[set_id] = region
    return conflicts, regions


def _unfit_ports(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, regions: dict[str, Regions],
                 rule_limit: int, on: Domain, cache: CompileCache | None) -> dict[str, list[tuple[int, int]]]:
    """Per candidate, the destination-port ranges of its region's boxes whose drop region (with
    every candidate empty) the classifier cannot hold: e.g. a port where L_0 allows ragged
    destinations (named ports), or a non-service port."""
    if not regions:
        return {}
    empty = View.of(compile_endpoint(_with_members(state, dict.fromkeys(regions, ())), ep, direction,
                                     rule_limit=rule_limit, cache=cache), on)
    out: dict[str, list[tuple[int, int]]] = {}
    for set_id, region in regions.items():
        for family, boxes in region.items():
            for box in boxes:
                try:
                    entries(family, denied_in(empty, family, [box]))
                except Unfit:
                    out.setdefault(set_id, []).append((box.b_lo, box.b_hi))
    return out


def _rules(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> Iterable[Rule]:
    for tier in ep.tiers:
        for key in tier.policies(direction):
            if key.kind not in STAGED_KINDS:
                yield from catalog.policy(key).rules(direction)
    for name in ep.profile_ids:
        yield from catalog.profile(name).rules(direction)


def _candidates(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                min_members: int) -> tuple[dict[str, int], set[frozenset[str]]]:
    """Address sets used only as the source of allow rules, large enough: set -> the ACL rules it
    costs (members x destination port ranges of its rules, an estimate to order them by), and
    the pairs that share a rule (AND: at most one of a pair may be gated)."""
    usable: dict[str, bool] = {}
    ports: dict[str, int] = {}
    pairs: set[frozenset[str]] = set()
    for rule in _rules(catalog, ep, direction):
        if rule.action is Action.LOG:
            continue  # the compiler ignores log rules
        for set_id in rule.src_ip_sets:
            usable[set_id] = usable.get(set_id, True) and rule.action is Action.ALLOW
            ports[set_id] = ports.get(set_id, 0) + max(1, len(rule.dst_ports))
        pairs |= {frozenset((a, b)) for a in rule.src_ip_sets for b in rule.src_ip_sets if a < b}
        for set_id in (*rule.dst_ip_sets, *rule.not_src_ip_sets, *rule.not_dst_ip_sets, *rule.ip_port_set_ids()):
            usable[set_id] = False
    weights: dict[str, int] = {}
    for set_id, ok in usable.items():
        ipset = state.ipsets.get(set_id)
        if ok and not set_id.endswith(REST) and ipset is not None and ipset.type is not IPSetType.IP_AND_PORT \
                and len(ipset.members) >= min_members:
            weights[set_id] = len(ipset.members) * ports[set_id]
    heaviest = sorted(weights, key=lambda s: (-weights[s], s))[:MAX_CANDIDATES]
    return {s: weights[s] for s in heaviest}, pairs


def _groups(regions: dict[str, Regions], conflicts: set[frozenset[str]], *, together: bool) -> list[list[str]]:
    """Sets (heaviest first, as `regions` is ordered) into at most MAX_GROUPS groups of pairwise
    disjoint regions, or all into one when `together` (markers); a set that fits nowhere, or
    shares a rule with a chosen one, stays in the ACL."""
    groups: list[list[str]] = []
    chosen: list[str] = []
    for set_id in regions:
        if any(frozenset((set_id, c)) in conflicts for c in chosen):
            continue
        home = next((g for g in groups if together or all(_disjoint(regions[set_id], regions[o]) for o in g)), None)
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


def _build(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, groups: list[list[str]],
           regions: dict[str, Regions], rule_limit: int, on: Domain,
           cache: CompileCache | None, marked: bool) -> tuple[CompiledList, Gate] | None:
    chosen = [s for g in groups for s in g]
    order = sorted(chosen, key=lambda s: list(regions).index(s))  # heaviest first

    def compiled(any_of: Iterable[str], markers: dict[str, int] | None = None) -> CompiledList:
        wide = set(any_of)
        held = _with_members(state, {s: ANY if s in wide else () for s in chosen})
        if markers:
            held = mark_sources(held, _policy_names(ep, direction), markers)
        return compile_endpoint(held, ep, direction, rule_limit=rule_limit, cache=cache)

    universe = compiled(chosen)
    if marked:  # one compile for L_0 and every L_i
        markers = {s: 1 + k for k, s in enumerate(order)}
        analysis = View.of(compiled(chosen, markers), on)
        try:
            empty = sliced(analysis, None, set(markers.values()))
            owns = {s: sliced(analysis, markers[s], set(markers.values())) for s in chosen}
        except Unfit as exc:
            raise _Drop(chosen, str(exc)) from exc
    else:
        empty = View.of(compiled(()), on)
    drops: dict[str, Regions] = {}
    unfit = []
    for set_id in order:
        try:
            drops[set_id] = {f: denied_in(empty, f, boxes) for f, boxes in regions[set_id].items()}
            for f, boxes in drops[set_id].items():
                entries(f, boxes)
        except Unfit:
            unfit.append(set_id)  # all of them at once: each retry is a compile
    if unfit:
        raise _Drop(unfit, "drop region unfit")
    sets = []
    for group in groups:
        if not marked:
            own = View.of(universe if len(groups) == 1 else compiled(group), on)
        for set_id in group:
            if marked:
                own = owns[set_id]
            try:
                if MEMBER_WISE:
                    raise Unfit("member-wise forced")
                admits = [e for f, boxes in drops[set_id].items() for e in entries(f, allowed_in(own, f, boxes))]
                sets.append(GatedSet(set_id, tuple(sorted(set(admits)))))
            except Unfit:
                decided = tuple((f, basis(own, f, boxes)) for f, boxes in sorted(drops[set_id].items()))
                try:  # the current members (a member change recompiles the list, and checks again)
                    for f, found in decided:
                        member_entries(f, found, _networks(state, set_id, f))
                except Unfit as exc:
                    raise _Drop((set_id,), str(exc)) from exc
                sets.append(GatedSet(set_id, (), (), decided))
    gaps: set[GapEntry] = set()
    for set_id in order:
        gaps |= {e for f, boxes in drops[set_id].items() for e in entries(f, boxes)}
        if len(gaps) > MAX_GAP_SESSIONS or len({e.shape for e in gaps}) > MAX_GAP_TABLES:
            raise _Drop(order[order.index(set_id):], "too many gap sessions or tables")
    sets = [_everywhere(g, gaps) for g in sets]
    shapes: set[tuple[int, int, int, int]] = set()
    for gated in sorted(sets, key=lambda g: order.index(g.set_id)):
        shapes |= admit_shapes(state, gated)
        if len(shapes) > MAX_PERMIT_TABLES:
            raise _Drop((gated.set_id,), "too many admit tables")
    if not any(g.admits or g.everywhere or g.basis for g in sets):
        return None  # no member is ever admitted where L_0 denies: L_U = L_0 = L
    return universe, Gate(tuple(sorted(sets, key=lambda g: g.set_id)), tuple(sorted(gaps)))


def _everywhere(gated: GatedSet, gaps: set[GapEntry]) -> GatedSet:
    """The families where the set's members are admitted in all of D (as entries, P_i = D)."""
    whole = tuple(f for f in (4, 6) if (own := {e for e in gated.admits if e.family == f})
                  and own == {e for e in gaps if e.family == f})
    if not whole:
        return gated
    return replace(gated, admits=tuple(e for e in gated.admits if e.family not in whole), everywhere=whole)


def admit_shapes(state: DataplaneState, gated: GatedSet) -> set[tuple[int, int, int, int]]:
    """An upper bound of the admit tables' shapes (family, source length, destination length,
    port mask) the set's current members need: a session's source is the longer of the member's
    and the entry's source prefix."""
    ipset = state.ipsets.get(gated.set_id)
    lengths = {4: set(), 6: set()} if ipset is None else _lengths(ipset.members)
    shapes = {(e.family, max(n, e.src.prefixlen), e.dst.prefixlen, e.dport_mask)
              for e in gated.admits for n in lengths[e.family]}
    shapes |= {(f, max(n, d.src_len), d.dst_len, mask) for f, (drops, _, _) in gated.basis for d in drops
               for _, mask in port_blocks(d.b_lo, d.b_hi) for n in lengths[f]}  # (cuts may add some)
    return shapes | {(f, n, -1, -1) for f in gated.everywhere for n in lengths[f]}  # src-only masks


def _networks(state: DataplaneState, set_id: str, family: int) -> list[IPNetwork]:
    ipset = state.ipsets.get(set_id)
    nets = [] if ipset is None else [ipaddress.ip_network(m, strict=False) for m in ipset.members]
    return [n for n in nets if n.version == family]


def _lengths(members: Iterable[str]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {4: set(), 6: set()}
    for m in members:
        net = ipaddress.ip_network(m, strict=False)
        out[net.version].add(net.prefixlen)
    return out


def _with_members(state: DataplaneState, members: Mapping[str, tuple[str, ...]]) -> DataplaneState:
    copy = state.copy()
    for set_id, held in members.items():
        copy.tables[Kind.IPSET][set_id] = IPSet(set_id, IPSetType.NET, frozenset(held))
    return copy


def _region(state: DataplaneState, ep: WorkloadEndpoint, direction: Direction, set_id: str,
            rule_limit: int, on: Domain, cache: CompileCache | None) -> Regions:
    """R_i: where the set's rules match when the set is every address, per family. Verdicts of
    L_0 and L_i can differ only there, so D_i = R_i minus what L_0 allows holds G_i and lies
    where L_0 denies, which is all the chain needs; and it is cheap: R_i is a small list."""
    rules = []
    for tier in ep.tiers:
        for key in tier.policies(direction):
            pb = state.policies.get(key)
            if pb is not None and key.kind not in STAGED_KINDS:
                rules += [r for r in pb.inbound_rules if set_id in r.src_ip_set_ids]
    for name in ep.profile_ids:
        rules += [r for r in state.profiles[name].inbound_rules if set_id in r.src_ip_set_ids]
    synthetic = _with_members(state, {set_id: ANY})
    key = PolicyKey(REGION_POLICY, "", "")
    synthetic.tables[Kind.POLICY][key] = felix.Policy(inbound_rules=rules)
    only = WorkloadEndpoint(ep.key, ep.name, True, (), (), (), (Tier("region", (key,), (), "Deny"),))
    region = View.of(compile_endpoint(synthetic, only, direction, rule_limit=rule_limit, cache=cache), on)
    out = {f: region.allowed(f, full_box()) for f in (4, 6)}
    return {f: boxes for f, boxes in out.items() if boxes}
