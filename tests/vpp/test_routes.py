"""routes.py without VPP: the route comparison (plan_routes) and which routes a pass may delete."""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.api.types import RouteTarget
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.routes import our_routes, plan_routes, remote_routes
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

net = ipaddress.ip_network
POD, UPLINK = 5, 1


def test_plan_adds_what_is_missing_or_different_and_deletes_only_our_stale() -> None:
    held = {net("10.65.0.2/32"): RouteTarget(sw_if_index=POD), net("10.65.0.3/32"): RouteTarget(sw_if_index=POD),
            net("10.70.0.0/26"): RouteTarget(next_hop=ipaddress.ip_address("192.0.2.7")),
            net("0.0.0.0/0"): RouteTarget(next_hop=ipaddress.ip_address("192.0.2.1"))}
    wanted = {net("10.65.0.2/32"): RouteTarget(sw_if_index=POD),  # as held: nothing
              net("10.70.0.0/26"): RouteTarget(next_hop=ipaddress.ip_address("192.0.2.8")),  # new next hop
              net("fd65::2/128"): RouteTarget(sw_if_index=POD)}  # missing
    ours = {net("10.65.0.2/32"), net("10.65.0.3/32"), net("10.70.0.0/26"), net("10.99.0.0/16")}
    plan = plan_routes(held, wanted, ours)
    assert plan.adds == [(net("10.70.0.0/26"), wanted[net("10.70.0.0/26")]),
                         (net("fd65::2/128"), wanted[net("fd65::2/128")])], "IPv4 first, then IPv6"
    assert plan.deletes == [net("10.65.0.3/32")], "not the foreign default route, not what VPP does not hold"
    assert plan_routes(held, {p: held[p] for p in held}, set(held)).adds == []


def test_ours_are_routes_through_pods_or_gone_interfaces_and_next_hops_we_made_or_in_a_pool() -> None:
    programmed = Programmed(interfaces={POD: InterfaceInfo(POD, "tap0", "vpa1:wl:k8s/ns/a/eth0", "virtio"),
                                        UPLINK: InterfaceInfo(UPLINK, "eth0", "", "dpdk")})
    gw = ipaddress.ip_address("192.0.2.7")
    programmed.routes = {
        net("10.65.0.2/32"): RouteTarget(sw_if_index=POD),
        net("10.65.0.9/32"): RouteTarget(sw_if_index=42),  # its interface is gone
        net("192.0.2.0/24"): RouteTarget(sw_if_index=UPLINK),  # the node's own
        net("10.70.0.0/26"): RouteTarget(next_hop=gw),  # made by an earlier pass
        net("10.80.0.0/26"): RouteTarget(next_hop=gw),  # inside a Felix pool: an earlier agent's
        net("0.0.0.0/0"): RouteTarget(next_hop=gw),  # someone else's
    }
    state = DataplaneState()
    state.apply(felix.ToDataplane(ipam_pool_update=felix.IPAMPoolUpdate(id="p", pool=felix.IPAMPool(
        cidr="10.80.0.0/16"))))
    assert our_routes(programmed, state, {net("10.70.0.0/26")}) == {
        net("10.65.0.2/32"), net("10.65.0.9/32"), net("10.70.0.0/26"), net("10.80.0.0/26")}
    assert net("10.70.0.0/26") not in our_routes(programmed, state, set()), "made routes are only ours when made"


def test_remote_blocks_are_felixs_routes_that_need_no_tunnel() -> None:
    """The VPP driver programs exactly the routes vppagent.state.routes gives encapsulation NONE
    (the answer the kernel driver uses too), via the other node; tunnelled ones are counted."""
    def update(dst: str, pool: int, **fields: object) -> felix.ToDataplane:
        return felix.ToDataplane(route_update=felix.RouteUpdate(
            dst=dst, types=felix.REMOTE_WORKLOAD, ip_pool_type=pool,  # type: ignore[arg-type]
            dst_node_name="node2", dst_node_ip="198.18.0.2", **fields))  # type: ignore[arg-type]

    state = DataplaneState()
    for message in (update("10.65.1.0/26", felix.NO_ENCAP), update("10.65.2.0/26", felix.NONE),
                    update("10.65.3.0/26", felix.IPIP), update("10.65.4.0/26", felix.IPIP, same_subnet=True),
                    update("10.65.5.0/26", felix.VXLAN)):
        state.apply(message)
    routes, unsupported = remote_routes(state)
    via = RouteTarget(next_hop=ipaddress.ip_address("198.18.0.2"))
    assert {str(p): t for p, (t, _) in routes.items()} == {"10.65.1.0/26": via, "10.65.4.0/26": via}
    assert unsupported == 2, "IPIP across subnets and VXLAN need tunnels; a pool of type NONE is no route"
