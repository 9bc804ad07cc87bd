"""Desired ACL lists: each endpoint's compiled list per direction as ACL content, cached.

Lists are compiled once per distinct endpoint policy set (active, tiers in that direction,
profiles): endpoints with the same set share the compiled list and, downstream, the ACL. The
cache is invalidated by the policies, profiles and IP sets an apply changes; what an invalidated
list recompiles draws on the policy core's CompileCache (policy/cache.py), so the rules and sets
it shares with other lists, or with its previous version, are not recomputed. `end_pass` bounds
both caches to what the pass used. Large IP sets in
ingress lists may go to the classifier instead (classifier/gate.py): then the list comes with its
gate. A gate is worked out with the list's destination sets that no member of which can meet
the endpoint emptied (classifier/source.py `reaching`: named ports of other pods then leave its
ports to the gate), so a gated ingress list is kept per spec and which of those sets the endpoint
is in: endpoints of one spec in the same sets share it. `lists_for_new_pod` is what a CNI Add binds before any
convergence.

Each endpoint then gets its list restricted to the packets that can reach it (policy/reach.py:
the rules its own addresses can never meet are dropped), per (list, domain) and cached with the
list: endpoints whose restricted lists are equal get one AclContent (and so share one ACL), and
an endpoint whose addresses change gets its list restricted anew. A list several endpoints share
keeps its ReachIndex, so each further endpoint costs a few lookups, not a pass over the rules.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.acl.plan import Wanted
from vppagent.drivers.vpp.acl.render import content_from_compiled, rules_from_compiled
from vppagent.drivers.vpp.api.types import DENY_ALL, AclContent, AclRule
from vppagent.drivers.vpp.classifier.gate import Gate, list_and_gate
from vppagent.drivers.vpp.classifier.source import DestinationIndex, destination_sets, rules
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.policy.cache import CompileCache, ListKey
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.model import Direction, IPNetwork, WorkloadEndpoint
from vppagent.policy.reach import Domain, ReachIndex, domain, restrict
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState, Kind, PolicyKey, WorkloadKey, ip_set_ids

log = logging.getLogger(__name__)

# Egress lists are restricted (to rules a source of the pod can match) because every pod's
# sources are guarded: the source guard (guard/, the input classifier on the pod interface) drops
# every source outside reach.egress_sources, and converge.py binds an egress ACL only where the
# pod's guard is attached. Without the guard a pod could send from any address, and a rule dropped
# for its source could still match: this must go back to False if the guard ever becomes optional.
# (The ingress side needs nothing: routing decides which destinations reach a pod.)
RESTRICT_EGRESS = True


def restricted_direction(direction: Direction) -> bool:
    """Whether the driver's lists in `direction` are restricted to what can reach them."""
    return direction is Direction.INGRESS or RESTRICT_EGRESS


@dataclass
class _Cached:
    rules: tuple[AclRule, ...]  # the whole list as ACL rules (L_U when there is a gate)
    gate: Gate | None
    policies: frozenset[PolicyKey]
    profiles: frozenset[str]
    list_keys: frozenset[ListKey]  # the policy core's lists this content came from
    # The content restricted per domain; equal restrictions are one object (by the kept rules).
    by_domain: dict[Domain, AclContent] = field(default_factory=dict)
    by_kept: dict[tuple[int, ...], AclContent] = field(default_factory=dict)
    # Kept from the second domain on (the list is shared): the rules by prefix, and the rules'
    # texts for the digests (computed as needed: most of a list's render cost is that text).
    shared: tuple[ReachIndex, list[str | None]] | None = None
    whole: AclContent | None = None

    @property
    def content(self) -> AclContent:
        """The whole list as ACL content (digested on first use: restricted lists rarely need it)."""
        if self.whole is None:
            self.whole = AclContent.of(self.rules)
        return self.whole

    def restricted(self, dom: Domain) -> AclContent:
        found = self.by_domain.get(dom)
        if found is not None:
            return found
        index, texts = self.shared or (ReachIndex(self.rules, dom.side), [None] * len(self.rules))
        if self.by_domain:
            self.shared = (index, texts)
        kept = index.kept(dom)
        content = self.whole if len(kept) == len(self.rules) else self.by_kept.get(kept)
        if content is None:
            content = AclContent.of_texts(tuple(self.rules[i] for i in kept), _texts(self.rules, texts, kept))
            if len(kept) == len(self.rules):
                self.whole = content
            else:
                self.by_kept[kept] = content
        self.by_domain[dom] = content
        return content

    def keep_only(self, domains: set[Domain]) -> None:
        """Forget the restrictions for domains nobody asked for (endpoints gone or readdressed)."""
        self.by_domain = {d: c for d, c in self.by_domain.items() if d in domains}
        used = {id(c) for c in self.by_domain.values()}
        self.by_kept = {k: c for k, c in self.by_kept.items() if id(c) in used}
        if len(self.by_domain) < 2:
            self.shared = None


def _texts(rules: tuple[AclRule, ...], texts: list[str | None], kept: tuple[int, ...]) -> list[str]:
    """The texts of the kept rules, filling `texts` as it goes."""
    out = []
    for i in kept:
        text = texts[i]
        if text is None:
            text = texts[i] = rules[i].text()
        out.append(text)
    return out


@dataclass
class _Destinations:
    """A spec's destination sets indexed by address (classifier/source.py), and what it names."""

    policies: frozenset[PolicyKey]
    profiles: frozenset[str]
    index: DestinationIndex
    by_domain: dict[Domain, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class KnownEndpoint:
    """A workload endpoint as the driver uses it, kept while Felix's message is the same object."""

    pb: Any
    ep: WorkloadEndpoint
    tag: str
    hosts: tuple[IPNetwork, ...]
    specs: dict[Direction, Hashable]
    domains: dict[Direction, Domain]  # what can reach its list in each restricted direction


class ListCompiler:
    """Compiled ACL content (and, for large IP sets, a classifier gate) per endpoint policy set,
    with dependency-based invalidation. `classifier_min_members` 0 keeps every set in ACLs."""

    def __init__(self, rule_limit: int, classifier_min_members: int = 0) -> None:
        self.rule_limit = rule_limit
        self.classifier_min_members = classifier_min_members
        self._cache: dict[Hashable, _Cached] = {}
        self._used: set[Hashable] = set()  # specs served since the last end_pass
        self._domains: dict[Hashable, set[Domain]] = {}  # their domains served since then
        self._endpoints: dict[WorkloadKey, KnownEndpoint] = {}
        self._destinations: dict[Hashable, _Destinations] = {}  # per ingress spec, when gating
        self._destinations_used: dict[Hashable, set[Domain]] = {}  # and their domains, since the last end_pass
        self._asked: set[WorkloadKey] = set()  # endpoints asked for since the last end_pass
        # The compiled lists themselves are not kept there (this class keeps their content).
        self.fragments = CompileCache(keep_lists=False)
        self.compiles = 0
        self.gated = 0  # compiles that gave a gate
        self.multi_set_gates = 0  # of those, gates with more than one set

    def endpoint(self, key: WorkloadKey, pb: Any) -> KnownEndpoint:
        """The typed endpoint, its tag and host routes; rebuilt only when Felix's message changes
        (stored messages are never mutated, and state copies share them)."""
        self._asked.add(key)
        known = self._endpoints.get(key)
        if known is None or known.pb is not pb:
            ep = WorkloadEndpoint.from_proto(key, pb)
            hosts = tuple(ipaddress.ip_network((n.network_address, n.max_prefixlen))
                          for n in (*ep.ipv4_nets, *ep.ipv6_nets))
            specs = {d: _list_spec(ep, d) for d in Direction}
            domains = {d: domain(ep, d) for d in Direction if restricted_direction(d)}
            known = self._endpoints[key] = KnownEndpoint(pb, ep, workload_tag(key), hosts, specs, domains)
        return known

    def clear(self) -> None:
        """Forget every list. The fragments stay (they are keyed by content), and so do the
        endpoints (keyed by their message object, which is never mutated)."""
        self._cache.clear()
        self._destinations.clear()

    def end_pass(self) -> None:
        """Drop the lists and endpoints nobody asked for since the last call, and the fragments
        that only those lists used: the caches hold what the current endpoints need, no more."""
        for spec in [s for s in self._cache if s not in self._used]:
            del self._cache[spec]
        for spec, cached in self._cache.items():
            cached.keep_only(self._domains.get(spec, set()))
        self._destinations = {s: d for s, d in self._destinations.items() if s in self._destinations_used}
        for spec, found in self._destinations.items():
            used = self._destinations_used[spec]
            found.by_domain = {d: m for d, m in found.by_domain.items() if d in used}
        self._destinations_used = {}
        self._used = set()
        self._domains = {}
        self._endpoints = {k: v for k, v in self._endpoints.items() if k in self._asked}
        self._asked = set()
        self.fragments.sweep()

    def invalidate(self, diff: StateDiff, state: DataplaneState) -> None:
        kinds = diff.kinds()
        if Kind.CONFIG in kinds:  # VXLAN port, encapsulation drops, failsafes
            self._cache.clear()
            self._destinations.clear()
            return
        policies = set(diff.upserts.get(Kind.POLICY, {})) | diff.removes.get(Kind.POLICY, set())
        profiles = set(diff.upserts.get(Kind.PROFILE, {})) | diff.removes.get(Kind.PROFILE, set())
        sets = set(diff.upserts.get(Kind.IPSET, {})) | diff.removes.get(Kind.IPSET, set())
        if sets:
            policies |= {key for key, policy in state.policies.items() if _uses_sets(policy, sets)}
            profiles |= {name for name, profile in state.profiles.items() if _uses_sets(profile, sets)}
        if not policies and not profiles:
            return
        for spec in [s for s, c in self._cache.items() if c.policies & policies or c.profiles & profiles]:
            del self._cache[spec]
        for spec in [s for s, d in self._destinations.items() if d.policies & policies or d.profiles & profiles]:
            del self._destinations[spec]

    def workload(self, catalog: Catalog, ep: WorkloadEndpoint, direction: Direction,
                 spec: Hashable | None = None, dom: Domain | None = None) -> AclContent:
        """The endpoint's list as ACL content; PolicyError when it cannot be compiled."""
        return self.program(catalog, ep, direction, spec, dom)[0]

    def program(self, catalog: Catalog, ep: WorkloadEndpoint, direction: Direction,
                spec: Hashable | None = None, dom: Domain | None = None) -> tuple[AclContent, Gate | None]:
        """ACL content and classifier gate (classifier/gate.py) for the endpoint's list in
        `direction`, restricted to what can reach the endpoint (with a gate: L_U restricted).
        `spec` and `dom`: the endpoint's (`KnownEndpoint`), when the caller has them."""
        if spec is None:
            spec = _list_spec(ep, direction)
        if dom is None and restricted_direction(direction):
            dom = domain(ep, direction)
        if dom is not None and direction is Direction.INGRESS and self.classifier_min_members and ep.active:
            spec = (spec, self._reaching(catalog, ep, spec, dom))  # the gate depends on it (classifier/source.py)
        self._used.add(spec)
        cached = self._cache.get(spec)
        if cached is not None:
            self.fragments.touch(cached.list_keys)
        else:
            cached = self._cache[spec] = self._compile(catalog, ep, direction)
        if dom is None or not restricted_direction(direction):
            return cached.content, cached.gate
        self._domains.setdefault(spec, set()).add(dom)
        return cached.restricted(dom), cached.gate

    def _reaching(self, catalog: Catalog, ep: WorkloadEndpoint, spec: Hashable,
                  dom: Domain) -> tuple[str, ...]:
        """The list's destination sets with a member that meets the endpoint's domain: the gate's
        analysis empties the others (classifier/source.py `reaching`), so endpoints of one spec
        share a gate where they are in the same such sets. Indexed once per spec."""
        found = self._destinations.get(spec)
        if found is None:
            ids = destination_sets(rules(catalog, ep, Direction.INGRESS))
            found = self._destinations[spec] = _Destinations(
                frozenset(k for t in ep.tiers for k in t.policies(Direction.INGRESS)), frozenset(ep.profile_ids),
                DestinationIndex(catalog.state, ids))
        self._destinations_used.setdefault(spec, set()).add(dom)
        meeting = found.by_domain.get(dom)
        if meeting is None:
            meeting = found.by_domain[dom] = found.index.meeting(dom.prefixes)
        return meeting

    def _compile(self, catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> _Cached:
        self.compiles += 1
        with self.fragments.recording() as list_keys:
            compiled, gate = list_and_gate(catalog, ep, direction, self.rule_limit, self.classifier_min_members,
                                           cache=self.fragments)
            if gate is not None:
                self.gated += 1
                self.multi_set_gates += len(gate.sets) > 1
        return _Cached(rules_from_compiled(compiled), gate,
                       frozenset(k for t in ep.tiers for k in t.policies(direction)),
                       frozenset(ep.profile_ids), frozenset(list_keys))


def lists_for_new_pod(state: DataplaneState | None, compiler: ListCompiler, workload: WorkloadKey) -> Wanted:
    """The lists a newly attached pod gets: its endpoint's, or drop-everything until Felix
    sends the endpoint (or when they cannot be compiled). A gated ingress list is bound exact
    (ungated): L_U is exact only with its chain, which a convergence attaches."""
    pb = None if state is None else state.workload_endpoints.get(workload)
    if state is None or pb is None:
        return (DENY_ALL, DENY_ALL)
    catalog = Catalog(state)
    try:
        ep = WorkloadEndpoint.from_proto(workload, pb)
        ingress, gate = compiler.program(catalog, ep, Direction.INGRESS)
        if gate is not None:
            exact = compile_endpoint(catalog, ep, Direction.INGRESS, rule_limit=compiler.rule_limit,
                                     cache=compiler.fragments)
            ingress = content_from_compiled(restrict(exact, ep, Direction.INGRESS)
                                            if restricted_direction(Direction.INGRESS) else exact)
        return (compiler.workload(catalog, ep, Direction.EGRESS), ingress)
    except ValueError as exc:  # PolicyError, or Felix's data that does not parse
        log.warning("pod %s attached closed: %s", workload, exc)
        return (DENY_ALL, DENY_ALL)


def _list_spec(ep: WorkloadEndpoint, direction: Direction) -> Hashable:
    """What an endpoint's list in one direction depends on (besides the objects it names)."""
    if not ep.active:
        return ("wl", direction, False)
    tiers = tuple((t.name, t.default_action, t.policies(direction)) for t in ep.tiers)
    return ("wl", direction, True, tiers, ep.profile_ids)


def _uses_sets(pb: Any, sets: set[str]) -> bool:
    """Whether a policy or profile message references any of `sets`."""
    return any(not ip_set_ids(rule).isdisjoint(sets) for rule in (*pb.inbound_rules, *pb.outbound_rules))
