"""Which RouteUpdates become routes to other nodes' blocks, and how: one answer for both drivers.

Each case pins what Felix itself does (projectcalico/calico, read 2026-12-06):
- felix/dataplane/linux/route_mgr.go: a route manager per encapsulation (noencap_mgr.go for
  NO_ENCAP pools, ipip_mgr.go, vxlan_mgr.go) keeps RouteUpdates that are REMOTE_WORKLOAD, or
  REMOTE_TUNNEL and borrowed, whose ip_pool_type is *its* pool type; nothing handles
  IPPoolType NONE, which felix/calc/l3_route_resolver.go sends for CIDRs in no workload pool
  (no pool, or a LoadBalancer-only pool).
- route_mgr.go noEncapRoute: unencapsulated via the node's address for NO_ENCAP pools, and for
  IPIP/VXLAN pools when same_subnet (cross-subnet mode); no route while dst_node_ip is unknown.
- felix/routetable/defs.go + route_table.go: RouteClassLocalWorkload wins any conflict, so a
  local workload's own route beats a remote block route for the same CIDR.
- felix/dataplane/linux/wireguard_mgr.go: WireGuard is a routing table of its own, chosen per
  destination node (peers with a published key) for workload and tunnel CIDRs; TunnelType only
  marks tunnel-address routes and does not change which main-table route a pool gets.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from vppagent.drivers.iptables.render import StateRenderer
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.model import DataplaneState
from vppagent.state.routes import Encap, remote_route, remote_routes


def update(**fields: Any) -> felix.RouteUpdate:
    base: dict[str, Any] = {"dst": "10.65.1.0/26", "types": felix.REMOTE_WORKLOAD, "ip_pool_type": felix.NO_ENCAP,
                            "dst_node_name": "node2", "dst_node_ip": "198.18.0.2"}
    return felix.RouteUpdate(**{**base, **fields})


@pytest.mark.parametrize(("fields", "encap"), [
    ({}, Encap.NONE),  # noencap_mgr: NO_ENCAP pool, via the node
    ({"ip_pool_type": felix.IPIP}, Encap.IPIP),
    ({"ip_pool_type": felix.VXLAN}, Encap.VXLAN),
    ({"ip_pool_type": felix.IPIP, "same_subnet": True}, Encap.NONE),  # cross-subnet, same subnet
    ({"ip_pool_type": felix.VXLAN, "same_subnet": True}, Encap.NONE),
    # A tunnel-address flag does not move a NO_ENCAP pool's route anywhere else (main table).
    ({"tunnel_type": felix.TunnelType(wireguard=True)}, Encap.NONE),
    ({"types": felix.REMOTE_WORKLOAD | felix.REMOTE_TUNNEL, "tunnel_type": felix.TunnelType(ipip=True)}, Encap.NONE),
    ({"types": felix.REMOTE_TUNNEL, "borrowed": True, "dst": "10.65.7.9/32"}, Encap.NONE),
    ({"dst": "fd65:1::/122", "dst_node_ip": "fd00::2"}, Encap.NONE),
])
def test_routes_felix_programs(fields: dict[str, Any], encap: Encap) -> None:
    route = remote_route(update(**fields))
    assert route is not None
    assert route.encap is encap
    assert route.node == "node2" and route.node_ip == ipaddress.ip_address(fields.get("dst_node_ip", "198.18.0.2"))
    assert route.dst == ipaddress.ip_network(fields.get("dst", "10.65.1.0/26"))


@pytest.mark.parametrize("fields", [
    {"ip_pool_type": felix.NONE},  # no pool (or LoadBalancer-only): no route manager takes it
    {"types": felix.LOCAL_WORKLOAD},  # our own block
    {"types": felix.REMOTE_HOST},  # another node's own address: its host route, not a block
    {"types": felix.REMOTE_TUNNEL},  # a tunnel address inside its node's block: the block covers it
    {"types": felix.REMOTE_WORKLOAD | felix.LOCAL_WORKLOAD, "local_workload": True},  # a local pod wins
    {"dst_node_ip": ""},  # the owner's address is not known yet
    {"dst_node_ip": "fd00::2"},  # no next hop in the block's family
    {"dst": "not-a-cidr"},
])
def test_route_updates_felix_leaves_out(fields: dict[str, Any]) -> None:
    assert remote_route(update(**fields)) is None


def test_wireguard_peer_takes_the_node_s_routes_when_enabled_here() -> None:
    state = DataplaneState()
    state.apply(b.route("10.65.1.0/26", felix.REMOTE_WORKLOAD, "node2", "198.18.0.2"))
    state.apply(b.route("10.65.2.0/26", felix.REMOTE_WORKLOAD, "node3", "198.18.0.3"))
    state.apply(felix.ToDataplane(wireguard_endpoint_update=felix.WireguardEndpointUpdate(
        hostname="node2", public_key="a2V5")))
    state.apply(felix.ToDataplane(wireguard_endpoint_update=felix.WireguardEndpointUpdate(hostname="node3")))
    before = {str(r.dst): r.encap for r in remote_routes(state)}
    assert before == {"10.65.1.0/26": Encap.NONE, "10.65.2.0/26": Encap.NONE}  # WireGuard off here
    state.apply(b.config({"WireguardEnabled": "true"}))
    after = {str(r.dst): r.encap for r in remote_routes(state)}
    # node3 published no key: Felix's WireGuard table throws its traffic back to the main table.
    assert after == {"10.65.1.0/26": Encap.WIREGUARD, "10.65.2.0/26": Encap.NONE}


def test_iptables_driver_routes_only_what_needs_no_tunnel() -> None:
    state = DataplaneState()
    state.apply(b.route("10.65.1.0/26", felix.REMOTE_WORKLOAD, "node2", "198.18.0.2"))
    state.apply(b.route("10.65.2.0/26", felix.REMOTE_WORKLOAD, "node3", "198.18.0.3", pool_type=felix.NONE))
    state.apply(b.route("10.65.3.0/26", felix.REMOTE_WORKLOAD, "node4", "198.18.0.4", pool_type=felix.IPIP))
    state.apply(b.route("fd65:1::/122", felix.REMOTE_WORKLOAD, "node2", "fd00::2"))
    renderer = StateRenderer()  # IPv4 only until settings say otherwise
    routes = renderer.remote_routes(state)
    assert [(r.dst, r.gateway) for r in routes] == [("10.65.1.0/26", "198.18.0.2")]
