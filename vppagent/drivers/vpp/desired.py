"""From the effective state to what VPP should hold: ACL content per interface and direction, routes.

- Workload endpoint → the pod interface tagged with its workload id: egress list as the input
  ACL, ingress list as the output ACL (DESIGN.md section 7). A pod interface whose endpoint Felix
  has not sent (yet) gets "drop everything" both ways, as Felix drops traffic from an interface it
  has no endpoint for; its routes (made at CNI Add) are left alone.
- Lists are compiled once per distinct endpoint policy set (active, tiers in that direction,
  profiles): endpoints with the same set share the compiled list and, downstream, the ACL. The
  cache is invalidated by the policies, profiles and IP sets an apply changes.
- Routes: each endpoint's addresses via its interface; remote blocks (REMOTE_WORKLOAD without
  encapsulation, as Felix's RouteUpdate describes them) via the other node's address.
- Large IP sets in ingress lists may go to the classifier instead (gate.py, classifier.py).
- Host endpoints: see hostendpoints.py.
A list that cannot be compiled fails its endpoint (status "error") and leaves what the endpoint
has in place: never a partial or more open list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.gate import Gate, gated_lists
from vppagent.drivers.vpp.programmed import Programmed, RouteTarget
from vppagent.drivers.vpp.render import DENY_ALL, AclContent, content_from_compiled
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.model import Direction, IPNetwork, PolicyError, WorkloadEndpoint
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState, Kind, PolicyKey, WorkloadKey

REMOTE_WORKLOAD = 1
NO_ENCAP_POOL_TYPES = (0, 1)  # NONE, NO_ENCAP
Owner = tuple[Kind, Any]


@dataclass
class Desired:
    wanted: dict[int, tuple[AclContent | None, AclContent | None]] = field(default_factory=dict)
    owners: dict[int, Owner] = field(default_factory=dict)  # interface → endpoint it serves
    routes: dict[IPNetwork, RouteTarget] = field(default_factory=dict)
    route_owners: dict[IPNetwork, Owner] = field(default_factory=dict)
    failed: dict[Owner, str] = field(default_factory=dict)
    gates: dict[int, Gate] = field(default_factory=dict)  # interface -> classifier gate on its output
    pinned: set[int] = field(default_factory=set)  # interfaces whose lists could not be compiled
    unsupported_routes: int = 0


@dataclass
class _Cached:
    content: AclContent
    gate: Gate | None
    policies: frozenset[PolicyKey]
    profiles: frozenset[str]


@dataclass(frozen=True)
class _Endpoint:
    """A workload endpoint as the driver uses it, kept while Felix's message is the same object."""

    pb: Any
    ep: WorkloadEndpoint
    tag: str
    hosts: tuple[IPNetwork, ...]
    specs: dict[Direction, Hashable]


class ListCompiler:
    """Compiled ACL content (and, for large IP sets, a classifier gate) per endpoint policy set,
    with dependency-based invalidation. `classifier_min_members` 0 keeps every set in ACLs."""

    def __init__(self, rule_limit: int, classifier_min_members: int = 0) -> None:
        self.rule_limit = rule_limit
        self.classifier_min_members = classifier_min_members
        self._cache: dict[Hashable, _Cached] = {}
        self._endpoints: dict[WorkloadKey, _Endpoint] = {}
        self.compiles = 0
        self.gated = 0

    def endpoint(self, key: WorkloadKey, pb: Any) -> _Endpoint:
        """The typed endpoint, its tag and host routes; rebuilt only when Felix's message changes
        (stored messages are never mutated, and state copies share them)."""
        known = self._endpoints.get(key)
        if known is None or known.pb is not pb:
            ep = WorkloadEndpoint.from_proto(key, pb)
            hosts = tuple(ipaddress.ip_network((n.network_address, n.max_prefixlen))
                          for n in (*ep.ipv4_nets, *ep.ipv6_nets))
            specs = {d: _list_spec(ep, d) for d in Direction}
            known = self._endpoints[key] = _Endpoint(pb, ep, workload_tag(key), hosts, specs)
        return known

    def clear(self) -> None:
        self._cache.clear()
        self._endpoints.clear()

    def invalidate(self, diff: StateDiff, state: DataplaneState) -> None:
        kinds = diff.kinds()
        if Kind.CONFIG in kinds:  # VXLAN port, encapsulation drops, failsafes
            self._cache.clear()
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

    def workload(self, catalog: Catalog, ep: WorkloadEndpoint, direction: Direction,
                 spec: Hashable | None = None) -> AclContent:
        """The endpoint's list as ACL content; PolicyError when it cannot be compiled."""
        return self.program(catalog, ep, direction, spec)[0]

    def program(self, catalog: Catalog, ep: WorkloadEndpoint, direction: Direction,
                spec: Hashable | None = None) -> tuple[AclContent, Gate | None]:
        """ACL content and classifier gate (gate.py) for the endpoint's list in `direction`."""
        if spec is None:
            spec = _list_spec(ep, direction)
        cached = self._cache.get(spec)
        if cached is None:
            self.compiles += 1
            gated = None
            if self.classifier_min_members:
                gated = gated_lists(catalog, catalog.state, ep, direction, self.rule_limit,
                                    self.classifier_min_members)
            if gated is not None:
                self.gated += 1
                compiled, gate = gated[0], gated[1]
            else:
                compiled, gate = compile_endpoint(catalog, ep, direction, rule_limit=self.rule_limit), None
            cached = _Cached(content_from_compiled(compiled), gate,
                             frozenset(k for t in ep.tiers for k in t.policies(direction)),
                             frozenset(ep.profile_ids))
            self._cache[spec] = cached
        return cached.content, cached.gate


def _list_spec(ep: WorkloadEndpoint, direction: Direction) -> Hashable:
    """What an endpoint's list in one direction depends on (besides the objects it names)."""
    if not ep.active:
        return ("wl", direction, False)
    tiers = tuple((t.name, t.default_action, t.policies(direction)) for t in ep.tiers)
    return ("wl", direction, True, tiers, ep.profile_ids)


_SET_REFERENCES: dict[int, tuple[Any, frozenset[str]]] = {}  # id(message) -> (message, set ids)


def _uses_sets(pb: Any, sets: set[str]) -> bool:
    known = _SET_REFERENCES.get(id(pb))
    if known is None or known[0] is not pb:
        ids: set[str] = set()
        for rule in (*pb.inbound_rules, *pb.outbound_rules):
            ids.update(rule.src_ip_set_ids, rule.dst_ip_set_ids, rule.not_src_ip_set_ids, rule.not_dst_ip_set_ids,
                       rule.src_named_port_ip_set_ids, rule.dst_named_port_ip_set_ids,
                       rule.not_src_named_port_ip_set_ids, rule.not_dst_named_port_ip_set_ids,
                       rule.dst_ip_port_set_ids)
        if len(_SET_REFERENCES) > 100_000:
            _SET_REFERENCES.clear()
        known = _SET_REFERENCES[id(pb)] = (pb, frozenset(ids))
    return not known[1].isdisjoint(sets)


def build_desired(state: DataplaneState, programmed: Programmed, compiler: ListCompiler) -> Desired:
    out = Desired()
    catalog = Catalog(state)
    pods = programmed.pod_interfaces()
    served: set[int] = set()
    for key, pb in state.workload_endpoints.items():
        owner: Owner = (Kind.WORKLOAD_ENDPOINT, key)
        known = compiler.endpoint(key, pb)
        ifx = pods.get(known.tag)
        if ifx is None:
            continue  # not attached here (yet): CNI Add binds it when it comes
        served.add(ifx)
        out.owners[ifx] = owner
        ep = known.ep
        try:
            egress = compiler.workload(catalog, ep, Direction.EGRESS, known.specs[Direction.EGRESS])
            ingress, gate = compiler.program(catalog, ep, Direction.INGRESS, known.specs[Direction.INGRESS])
        except PolicyError as exc:
            out.failed[owner] = str(exc)
            out.wanted[ifx] = (None, None)
            out.pinned.add(ifx)
        else:
            out.wanted[ifx] = (egress, ingress)
            if gate is not None:
                out.gates[ifx] = gate
        for host in known.hosts:
            out.routes[host] = RouteTarget(sw_if_index=ifx)
            out.route_owners[host] = owner
    for ifx in pods.values():
        if ifx not in served:
            out.wanted[ifx] = (DENY_ALL, DENY_ALL)
            for prefix, target in programmed.routes.items():
                if target.sw_if_index == ifx:
                    out.routes.setdefault(prefix, target)
    _remote_routes(state, out)
    return out


def _remote_routes(state: DataplaneState, out: Desired) -> None:
    for dst, update in sorted(state.routes.items()):
        if not update.types & REMOTE_WORKLOAD or update.local_workload or not update.dst_node_ip:
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
            gateway = ipaddress.ip_address(update.dst_node_ip)
        except ValueError:
            continue  # the store validates routes; nothing sensible to program
        if (update.ip_pool_type not in NO_ENCAP_POOL_TYPES or update.tunnel_type.ipip
                or update.tunnel_type.vxlan or update.tunnel_type.wireguard or net.version != gateway.version):
            out.unsupported_routes += 1  # tunnels are not programmed by this driver
            continue
        if net not in out.routes:  # a local endpoint's own address wins
            out.routes[net] = RouteTarget(next_hop=gateway)
            out.route_owners[net] = (Kind.ROUTE, dst)
