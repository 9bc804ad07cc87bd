"""Which IP sets of an ingress list move to the classifier (a gate), and what the classifier must
then hold: per gated set the region where its members are admitted, and the drop region.

Candidates: address sets used in the list only as the source of allow rules, with at least
`min_members` members or fewer when they pay (source.pays), no two of them in one rule; a set
is gated when its drop region D_i (below) is TCP/UDP to destination ports below EPHEMERAL_START
with any source port, and small enough. Let L_U be the list with every gated set = every
address, L_0 with every gated set = no address, and L_i with set i = every address and the other
gated sets empty. Then, for every packet p:

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

L_0, every L_i and L_U come from one compile of the list with source-port markers (marked.py)
when no rule of the list names a source port; otherwise from one compile per group of sets with
disjoint regions (grouped.py). A plan (plan.py) that breaks a bound is made again without the
sets at fault. Bounds per (gate, family):
MAX_GAP_SESSIONS drop sessions, MAX_GAP_TABLES gap tables and MAX_PERMIT_TABLES admit tables
(each table is one hash lookup per packet).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from vppagent.drivers.vpp.classifier.aggregate import ladder
from vppagent.drivers.vpp.classifier.aliases import alias_allow_sources, real_set
from vppagent.drivers.vpp.classifier.grouped import grouped_plan
from vppagent.drivers.vpp.classifier.marked import markable, marked_plan
from vppagent.drivers.vpp.classifier.memberwise import check_members
from vppagent.drivers.vpp.classifier.plan import MAX_GAP_SESSIONS, MAX_GAP_TABLES, Drop, Plan, Regions, gap_entries
from vppagent.drivers.vpp.classifier.prune import without_needless_denies
from vppagent.drivers.vpp.classifier.regions import (
    BOX_LIMIT,
    EPHEMERAL_START,
    Basis,
    GapEntry,
    Unfit,
    allowed_in,
    basis,
    denied_in,
    entries,
    port_blocks,
)
from vppagent.drivers.vpp.classifier.source import (
    admitted,
    destination_sets,
    networks,
    policy_names,
    reaching,
    rules,
)
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, no_cycle_collection
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, WorkloadEndpoint
from vppagent.policy.reach import domain
from vppagent.state.model import DataplaneState

__all__ = ["EPHEMERAL_START", "GapEntry", "Gate", "GatedSet", "gated_lists", "list_and_gate", "port_blocks"]

MAX_PERMIT_TABLES = 8
EntryKey = tuple[int, int, int, int, int, int, int, int]  # GapEntry.key()
MAX_ATTEMPTS = 3
MEMBER_WISE = False  # tests set it: every P_i worked out per member (the path ragged regions take)


@dataclass(frozen=True)
class GatedSet:
    """One gated set and where its members are admitted (P_i, as classifier entries). In the
    families of `everywhere`, P_i is the whole drop region: a member is then admitted by its
    source address alone (one session per block of members, not one per block and entry)."""

    set_id: str
    admits: tuple[GapEntry, ...]
    everywhere: tuple[int, ...] = ()
    # Where P_i is too ragged to hold as entries (earlier denies of single addresses cut it):
    # per family, what decides it (regions.Basis); the sessions are then worked out per member.
    basis: tuple[tuple[int, Basis], ...] = ()

    @functools.cached_property
    def tails(self) -> frozenset[tuple[int, int, int, int]]:
        """(family, source length, destination length, port mask) of the admit entries: what
        their tables' shapes follow from (remembered: a gate asks per set, more than once)."""
        return frozenset((k[0], k[2], k[4], k[7]) for k in (e.key() for e in self.admits))


def set_ladder(gated: GatedSet, family: int, tables: int) -> tuple[int, ...]:
    """The block lengths of a gated set's members in `family`: as many as `tables` admit tables
    allow for its tails (destination prefix and port mask: each block length is one table per
    tail), so that its host members alone never need more tables than that."""
    if family in gated.everywhere:
        tails = 1
    else:
        found = {(dst_len, mask) for f, _, dst_len, mask in gated.tails if f == family}
        for f, (drops, _, _) in gated.basis:
            if f == family:
                found |= {(d.dst_len, mask) for d in drops for _, mask in port_blocks(d.b_lo, d.b_hi)}
        tails = max(1, len(found))
    return ladder(family, tables // tails)


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


def gated_lists(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
                rule_limit: int, min_members: int,
                cache: CompileCache | None = None) -> tuple[CompiledList, Gate] | None:
    """(L_U, gate) when some sets qualify, else None (compile the list the ordinary way). With
    `cache`, the compiles share fragments with every other list (policy/cache.py)."""
    found = _analysed(catalog, state, ep, direction, rule_limit, min_members, cache)
    if found is None or found[1] is None:
        return None
    return found[0], found[1]


def list_and_gate(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction, rule_limit: int,
                  min_members: int, cache: CompileCache | None = None) -> tuple[CompiledList, Gate | None]:
    """The list for the ACL and its gate: (L_U, gate) when sets are gated, else (L, None). When
    the analysis compiled and found that no member is admitted anywhere L_0 denies, L_U is L
    (gate.py's identity with every P_i empty) and serves as it, instead of a second compile."""
    found = _analysed(catalog, catalog.state, ep, direction, rule_limit, min_members, cache) \
        if min_members else None
    if found is not None:
        return found
    return compile_endpoint(catalog, ep, direction, rule_limit=rule_limit, cache=cache), None


def _analysed(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
              rule_limit: int, min_members: int,
              cache: CompileCache | None) -> tuple[CompiledList, Gate | None] | None:
    """(L_U, gate); (L_U, None) when L_U = L; None when the list is to be compiled as it is."""
    if direction is not Direction.INGRESS or not ep.active:
        return None
    with no_cycle_collection():  # (boxes and entries by the million, no cycles: as compiles do)
        return _analysis(catalog, state, ep, direction, rule_limit, min_members, cache)


def _analysis(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
              rule_limit: int, min_members: int,
              cache: CompileCache | None) -> tuple[CompiledList, Gate | None] | None:
    names = policy_names(ep, direction)
    # (destination sets that cannot hold the endpoint emptied: acl/lists.py keys gates by which can)
    narrowed = reaching(state, destination_sets(rules(catalog, ep, direction)), domain(ep, direction).prefixes)
    cut, state = narrowed is not state, narrowed
    state, aliases = alias_allow_sources(state, rules(catalog, ep, direction), names)
    if aliases or cut:
        catalog = catalog.derived(state, *names)
    plan = marked_plan if markable(catalog, ep, direction) else grouped_plan
    excluded: frozenset[str] = frozenset()
    for _ in range(MAX_ATTEMPTS):
        try:
            planned = plan(catalog, state, ep, direction, min_members, rule_limit, cache, excluded)
            if planned is None:
                return None
            gate = _gate(planned)
        except Drop as drop:
            excluded |= drop.set_ids
            continue
        except Unfit:
            return None  # a region no step expected to be unfit: the list stays whole in the ACL (exact)
        if gate is None:
            return planned.universe, None  # no member is ever admitted where L_0 denies: L_U = L_0 = L
        sets = tuple(sorted((replace(g, set_id=real_set(g.set_id)) for g in gate.sets), key=lambda g: g.set_id))
        return without_needless_denies(planned.universe, gate.gaps, planned.universe_boxes), Gate(sets, gate.gaps)
    return None


def _gate(plan: Plan) -> Gate | None:
    """The gate for a plan: D_i = R_i minus what L_0 allows, P_i = what L_i allows in D_i (as
    entries, or worked out per member), within the bounds; Drop names the sets at fault."""
    order = plan.order
    drops: dict[str, Regions] = {}
    unfit = []
    for set_id in order:
        try:
            drops[set_id] = {f: denied_in(plan.empty, f, boxes) for f, boxes in plan.regions[set_id].items()}
            for f, boxes in drops[set_id].items():
                gap_entries(f, boxes)
        except Unfit:
            unfit.append(set_id)  # all of them at once: each new plan is a compile
    if unfit:
        raise Drop(unfit, "drop region unfit")
    sets = []
    for set_id in order:
        own = plan.own(set_id)
        try:
            if MEMBER_WISE:
                raise Unfit("member-wise forced")
            if sum(len(own.meeting(f, d)) for f, boxes in drops[set_id].items() for d in boxes) > BOX_LIMIT:
                raise Unfit("many rules decide P_i: worked out per member")  # (as entries: too ragged, mostly)
            admits = [e for f, boxes in drops[set_id].items() for e in entries(f, allowed_in(own, f, boxes))]
            sets.append(GatedSet(set_id, in_order(admits)))
        except Unfit:
            decided = tuple((f, basis(own, f, boxes)) for f, boxes in sorted(drops[set_id].items()))
            try:  # the current members (a member change recompiles the list, and checks again)
                for f, found in decided:
                    check_members(f, found, networks(plan.state, set_id, f), own)
            except Unfit as exc:
                raise Drop((set_id,), str(exc)) from exc
            sets.append(GatedSet(set_id, (), (), decided))
    gaps: set[GapEntry] = set()
    for set_id in order:
        gaps |= {e for f, boxes in drops[set_id].items() for e in entries(f, boxes)}
        if len(gaps) > MAX_GAP_SESSIONS or len({e.shape for e in gaps}) > MAX_GAP_TABLES:
            raise Drop(order[order.index(set_id):], "too many gap sessions or tables")
    gap_keys = {f: {e.key() for e in gaps if e.family == f} for f in (4, 6)}
    sets = [_everywhere(g, gap_keys) for g in sets]
    shapes: set[tuple[int, int, int, int]] = set()
    for gated in sorted(sets, key=lambda g: order.index(g.set_id)):
        shapes |= admit_shapes(plan.state, gated)
        if len(shapes) > MAX_PERMIT_TABLES:
            raise Drop((gated.set_id,), "too many admit tables")
    if not any(g.admits or g.everywhere or g.basis for g in sets):
        return None  # no member is ever admitted where L_0 denies
    return Gate(tuple(sets), in_order(gaps))


def in_order(found: Iterable[GapEntry]) -> tuple[GapEntry, ...]:
    """Without repeats, sorted (GapEntry's order, by integer keys: comparing and hashing
    ipaddress objects costs more than the rest of a gate)."""
    entries = list(found)
    keyed = dict(zip(map(GapEntry.key, entries), entries, strict=True))
    return tuple(map(keyed.__getitem__, sorted(keyed)))


def _everywhere(gated: GatedSet, gaps: dict[int, set[EntryKey]]) -> GatedSet:
    """The families where the set's members are admitted in all of D (as entries, P_i = D;
    `gaps`: D's entries by family, as keys)."""
    whole = tuple(f for f in (4, 6) if gaps[f] and sum(e.family == f for e in gated.admits) == len(gaps[f])
                  and {e.key() for e in gated.admits if e.family == f} == gaps[f])
    if not whole:
        return gated
    return replace(gated, admits=tuple(e for e in gated.admits if e.family not in whole), everywhere=whole)


def admit_shapes(state: DataplaneState, gated: GatedSet) -> set[tuple[int, int, int, int]]:
    """An upper bound of the admit tables' shapes (family, source length, destination length,
    port mask) the set's current members need: a session's source is the longer of the entry's
    source prefix and the prefix admitted (a block of members, or a member: admits.py)."""
    ipset = state.ipsets.get(gated.set_id)
    held: frozenset[str] = frozenset() if ipset is None else frozenset(ipset.members)
    families = {e.family for e in gated.admits} | {f for f, _ in gated.basis} | set(gated.everywhere)
    lengths = {f: admitted(held, f, set_ladder(gated, f, MAX_PERMIT_TABLES), gated.set_id)[1]
               if f in families else frozenset() for f in (4, 6)}
    for f, _ in gated.basis:  # a block cut below it is admitted member by member (admits.py)
        lengths[f] |= {32 if f == 4 else 128} if lengths[f] else set()
    shapes = {(f, max(n, src_len), dst_len, mask) for f, src_len, dst_len, mask in gated.tails for n in lengths[f]}
    shapes |= {(f, max(n, d.src_len), d.dst_len, mask) for f, (drops, _, _) in gated.basis for d in drops
               for _, mask in port_blocks(d.b_lo, d.b_hi) for n in lengths[f]}  # (cuts may add some)
    return shapes | {(f, n, -1, -1) for f in gated.everywhere for n in lengths[f]}  # src-only masks
