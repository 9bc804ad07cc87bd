"""Which of Felix's RouteUpdates become routes to other nodes' workloads here, and how.

The one answer both dataplanes use (pure: no I/O). `remote_routes(state)` lists every route to a
remote IPAM block (or borrowed tunnel address) this node should hold, with its encapsulation and
the other node's address; a driver programs the encapsulations it supports and counts the rest.
Each rule follows what Felix does; tests/unit/test_remote_routes.py cites the Felix code per case.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState, Kind

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Encap(StrEnum):
    """How packets for a remote block leave this node."""

    NONE = "none"  # plain IP, next hop the other node's address
    IPIP = "ipip"  # IP-in-IP to the other node's address
    VXLAN = "vxlan"  # VXLAN to the other node's VTEP (Kind.VTEP, keyed by node name)
    WIREGUARD = "wireguard"  # encrypted to the other node's WireGuard peer


@dataclass(frozen=True)
class RemoteRoute:
    dst: IPNetwork
    node: str  # the node that owns the block (RouteUpdate.dst_node_name)
    node_ip: IPAddress  # that node's address in dst's family: the next hop unless encap says else
    encap: Encap
    source: str  # the RouteUpdate's key (its dst as Felix wrote it)


_POOL_ENCAP = {
    felix.NO_ENCAP: Encap.NONE,
    felix.IPIP: Encap.IPIP,
    felix.VXLAN: Encap.VXLAN,
}


def _is(update: felix.RouteUpdate, route_type: int) -> bool:
    return (update.types & route_type) == route_type


def remote_route(update: felix.RouteUpdate, wireguard_peers: Collection[str] = ()) -> RemoteRoute | None:
    """The route `update` asks for on this node, or None when it asks for none (yet).

    `wireguard_peers`: nodes reached through WireGuard in dst's family (see `wireguard_peers`).
    """
    remote_block = _is(update, felix.REMOTE_WORKLOAD)
    borrowed_tunnel = _is(update, felix.REMOTE_TUNNEL) and update.borrowed
    if not (remote_block or borrowed_tunnel) or update.local_workload:
        return None
    pool_encap = _POOL_ENCAP.get(update.ip_pool_type)
    if pool_encap is None:  # IPPoolType NONE: in no workload pool
        return None
    if not update.dst_node_ip:
        return None  # the owner's address is not known yet
    try:
        dst = ipaddress.ip_network(update.dst, strict=False)
        node_ip = ipaddress.ip_address(update.dst_node_ip)
    except ValueError:
        return None
    if dst.version != node_ip.version:
        return None
    if update.dst_node_name in wireguard_peers:
        encap = Encap.WIREGUARD
    elif pool_encap is not Encap.NONE and update.same_subnet:
        encap = Encap.NONE  # cross-subnet pool, owner on our subnet: sent unencapsulated
    else:
        encap = pool_encap
    return RemoteRoute(dst, update.dst_node_name, node_ip, encap, update.dst)


def wireguard_peers(state: DataplaneState, family: int) -> frozenset[str]:
    """Nodes whose traffic in `family` goes through WireGuard: this node has WireGuard on for the
    family (Felix's WireguardEnabled / WireguardEnabledV6) and the node has published a key."""
    flag = "wireguardenabled" if family == 4 else "wireguardenabledv6"
    enabled = any(k.lower() == flag and v.strip().lower() == "true" for k, v in state.config.items())
    if not enabled:
        return frozenset()
    if family == 4:
        return frozenset(host for host, ep in state.tables[Kind.WIREGUARD].items() if ep.public_key)
    return frozenset(host for host, ep in state.tables[Kind.WIREGUARD_V6].items() if ep.public_key_v6)


def remote_routes(state: DataplaneState) -> list[RemoteRoute]:
    """Every route to another node's workloads that this node should hold, ordered by key."""
    peers = {4: wireguard_peers(state, 4), 6: wireguard_peers(state, 6)}
    out = []
    for key in sorted(state.routes):
        update = state.routes[key]
        family = 6 if ":" in update.dst else 4
        route = remote_route(update, peers[family])
        if route is not None:
            out.append(route)
    return out
