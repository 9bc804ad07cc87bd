"""What VPP should hold for a state: ACL content per interface and direction, classifier gates,
routes, and the Felix object each serves.

- Workload endpoint → the pod interface tagged with its workload id: egress list as the input
  ACL, ingress list as the output ACL (DESIGN.md section 7), its addresses as routes through the
  interface, the sources it may send from as its source guard (guard/). A pod interface whose
  endpoint Felix has not sent (yet) gets "drop everything" both ways, as Felix drops traffic
  from an interface it has no endpoint for; its routes (made at CNI Add) are left alone.
- Host endpoints: acl/hostendpoints.py. Remote blocks: routes.py.
A list that cannot be compiled fails its endpoint (status "error") and pins what the endpoint
has in place (its lists, source guard and routes): never a partial or more open list.
`Programmed`'s ACL contents equal to a wanted list become that list's object (`share_contents`),
so what follows compares contents by identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vppagent.drivers.vpp.acl.hostendpoints import host_endpoint_lists
from vppagent.drivers.vpp.acl.lists import ListCompiler
from vppagent.drivers.vpp.acl.plan import Wanted
from vppagent.drivers.vpp.api.types import DENY_ALL, RouteTarget
from vppagent.drivers.vpp.classifier.gate import Gate
from vppagent.drivers.vpp.failures import Owner
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.drivers.vpp.routes import remote_routes
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.policy.catalog import Catalog
from vppagent.policy.model import Direction, IPNetwork, PolicyError, WorkloadEndpoint
from vppagent.state.model import DataplaneState, Kind


@dataclass
class Desired:
    wanted: dict[int, Wanted] = field(default_factory=dict)
    owners: dict[int, Owner] = field(default_factory=dict)  # interface → endpoint it serves
    routes: dict[IPNetwork, RouteTarget] = field(default_factory=dict)
    route_owners: dict[IPNetwork, Owner] = field(default_factory=dict)
    failed: dict[Owner, str] = field(default_factory=dict)
    gates: dict[int, Gate] = field(default_factory=dict)  # interface -> classifier gate on its output
    guards: dict[int, WorkloadEndpoint] = field(default_factory=dict)  # pod interface -> endpoint its guard is for
    pinned: set[int] = field(default_factory=set)  # interfaces whose lists could not be compiled
    unsupported_routes: int = 0


def build_desired(state: DataplaneState, programmed: Programmed, compiler: ListCompiler) -> Desired:
    out = Desired()
    catalog = Catalog(state)
    pods = programmed.pod_interfaces()
    served: set[int] = set()
    for key, pb in state.workload_endpoints.items():
        owner: Owner = (Kind.WORKLOAD_ENDPOINT, key)
        try:
            known = compiler.endpoint(key, pb)
        except ValueError as exc:  # Felix's data does not parse: this endpoint's fault alone
            out.failed[owner] = f"workload endpoint {key}: {exc}"
            ifx = pods.get(workload_tag(key))
            if ifx is not None:  # it keeps what it has: its lists pinned, its routes left alone
                served.add(ifx)
                out.owners[ifx] = owner
                out.wanted[ifx] = _pinned(programmed, ifx)
                out.pinned.add(ifx)
                _keep_routes(programmed, ifx, out)
            continue
        ifx = pods.get(known.tag)
        if ifx is None:
            continue  # not attached here (yet): CNI Add binds it when it comes
        served.add(ifx)
        out.owners[ifx] = owner
        ep = known.ep
        try:
            egress = compiler.workload(catalog, ep, Direction.EGRESS, known.specs[Direction.EGRESS],
                                       known.domains.get(Direction.EGRESS))
            ingress, gate = compiler.program(catalog, ep, Direction.INGRESS, known.specs[Direction.INGRESS],
                                             known.domains.get(Direction.INGRESS))
        except PolicyError as exc:
            # Its guard and routes stay as they are too: the pinned lists are restricted to the
            # addresses they were made for (acl/lists.py), so a guard or a route for new addresses
            # would send them packets whose rules the restriction dropped.
            out.failed[owner] = str(exc)
            out.wanted[ifx] = _pinned(programmed, ifx)
            out.pinned.add(ifx)
            _keep_routes(programmed, ifx, out)
            continue
        out.guards[ifx] = ep
        out.wanted[ifx] = (egress, ingress)
        if gate is not None:
            out.gates[ifx] = gate
        for host in known.hosts:
            out.routes[host] = RouteTarget(sw_if_index=ifx)
            out.route_owners[host] = owner
    for ifx in pods.values():
        if ifx not in served:
            out.wanted[ifx] = (DENY_ALL, DENY_ALL)
            _keep_routes(programmed, ifx, out)
    remote, out.unsupported_routes = remote_routes(state)
    for net, (target, owner) in remote.items():
        if net not in out.routes:  # a local endpoint's own address wins
            out.routes[net] = target
            out.route_owners[net] = owner
    host_endpoint_lists(state, programmed, compiler, out.wanted, out.owners, out.failed)
    compiler.end_pass()  # the list caches now hold what this state's endpoints use, no more
    programmed.share_contents(c for pair in out.wanted.values() for c in pair if c is not None)
    return out


def _keep_routes(programmed: Programmed, ifx: int, out: Desired) -> None:
    """The routes through `ifx` stay as they are (made at CNI Add, or for an endpoint that failed)."""
    for prefix, target in programmed.routes.items():
        if target.sw_if_index == ifx:
            out.routes.setdefault(prefix, target)


def _pinned(programmed: Programmed, ifx: int) -> Wanted:
    """A pinned interface keeps the list it has in each direction; where it has none of ours (a
    pod interface re-created after a VPP restart) it drops everything: with no list and no guard
    it would otherwise pass anything, spoofed sources included."""
    bound = programmed.binding(ifx)
    return (None if bound[0] is not None else DENY_ALL, None if bound[1] is not None else DENY_ALL)
