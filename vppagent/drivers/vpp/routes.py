"""Routes in VPP's FIB (table 0): which are wanted, which are ours, and making them so.

Wanted: each workload endpoint's addresses through its pod interface (desired.py), and the
routes to other nodes' blocks that need no tunnel (`remote_routes`) via the other node's address.
Routes carry no tags, so a route is ours (`our_routes`, the ones a pass may delete) when its path
goes through one of our pod interfaces or an interface that no longer exists, or when the driver
made it (a next-hop route it programmed, or after an agent restart one inside one of Felix's IPAM
pools). `plan_routes` is the comparison (pure), `apply_routes` carries it out.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.types import RouteTarget
from vppagent.drivers.vpp.failures import Failures, Owner
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.policy.model import IPNetwork
from vppagent.state import routes as felix_routes
from vppagent.state.model import DataplaneState, Kind

log = logging.getLogger(__name__)


@dataclass
class RoutePlan:
    adds: list[tuple[IPNetwork, RouteTarget]] = field(default_factory=list)  # adds and path changes
    deletes: list[IPNetwork] = field(default_factory=list)


def remote_routes(state: DataplaneState) -> tuple[dict[IPNetwork, tuple[RouteTarget, Owner]], int]:
    """Felix's routes to other nodes' blocks (vppagent.state.routes, the answer both dataplanes
    use) that need no tunnel, via the other node; and how many were left out because they need
    one (IPIP, VXLAN, WireGuard: not programmed by this driver)."""
    out: dict[IPNetwork, tuple[RouteTarget, Owner]] = {}
    unsupported = 0
    for route in felix_routes.remote_routes(state):
        if route.encap is not felix_routes.Encap.NONE:
            unsupported += 1
            continue
        out.setdefault(route.dst, (RouteTarget(next_hop=route.node_ip), (Kind.ROUTE, route.source)))
    return out, unsupported


def our_routes(programmed: Programmed, state: DataplaneState, made: AbstractSet[IPNetwork]) -> set[IPNetwork]:
    """Routes a pass may delete: through pod interfaces or interfaces that are gone; next-hop
    routes we made (`made`), or (after a restart) inside one of Felix's IPAM pools."""
    pod_ifx = set(programmed.pod_interfaces().values())
    pools = _pool_networks(state)
    ours = set()
    for prefix, target in programmed.routes.items():
        if target.sw_if_index is not None:
            if target.sw_if_index in pod_ifx or target.sw_if_index not in programmed.interfaces:
                ours.add(prefix)
        elif prefix in made or any(_within(prefix, pool) for pool in pools):
            ours.add(prefix)
    return ours


def made_routes(programmed: Programmed, wanted: Mapping[IPNetwork, RouteTarget]) -> set[IPNetwork]:
    """The next-hop routes VPP now holds as wanted: ours to delete later."""
    return {p for p, t in wanted.items() if t.next_hop is not None and programmed.routes.get(p) == t}


def plan_routes(held: Mapping[IPNetwork, RouteTarget], wanted: Mapping[IPNetwork, RouteTarget],
                ours: AbstractSet[IPNetwork]) -> RoutePlan:
    """Add what is missing or different (an add replaces the prefix's path); delete our stale."""
    plan = RoutePlan()
    for prefix, target in sorted(wanted.items(), key=lambda item: (item[0].version, item[0])):
        if held.get(prefix) != target:
            plan.adds.append((prefix, target))
    plan.deletes = [p for p in sorted(ours - wanted.keys(), key=lambda p: (p.version, p)) if p in held]
    return plan


def apply_routes(calls: VppCalls, programmed: Programmed, plan: RoutePlan,
                 owners: Mapping[IPNetwork, Owner]) -> Failures:
    """Carry out `plan`, keeping `programmed.routes` true; a refused add fails its owner. Adds are
    one pipeline and deletes another, after every add is answered (a path change before the
    stale routes go)."""
    failed: Failures = {}
    for (prefix, target), refused in zip(plan.adds, calls.batches.routes_write(plan.adds), strict=True):
        if refused is not None:
            owner = owners.get(prefix)
            if owner is not None:
                failed.setdefault(owner, str(refused))
            continue
        programmed.routes[prefix] = target
    deletes = [p for p in plan.deletes if p in programmed.routes]
    for prefix, refused in zip(deletes, calls.batches.routes_write([(p, None) for p in deletes]), strict=True):
        if refused is not None:
            log.warning("stale route %s not deleted: %s", prefix, refused)
            continue
        del programmed.routes[prefix]
    return failed


def sync_routes(calls: VppCalls, programmed: Programmed, wanted: Mapping[IPNetwork, RouteTarget],
                ours: AbstractSet[IPNetwork], owners: Mapping[IPNetwork, Owner]) -> Failures:
    """plan_routes against what VPP holds, then apply_routes."""
    return apply_routes(calls, programmed, plan_routes(programmed.routes, wanted, ours), owners)


def _pool_networks(state: DataplaneState) -> list[IPNetwork]:
    out = []
    for pool in state.ipam_pools.values():
        try:
            out.append(ipaddress.ip_network(pool.cidr, strict=False))
        except ValueError:
            continue
    return out


def _within(prefix: IPNetwork, pool: IPNetwork) -> bool:
    return prefix.version == pool.version and prefix.subnet_of(pool)  # type: ignore[arg-type]
