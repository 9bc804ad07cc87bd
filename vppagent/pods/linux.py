"""The pod's Linux side, shared by both attachments: the kernel's veth (veth.py) and VPP's tap or
af_packet veth (vppagent/drivers/vpp/pods/linux.py). Netlink through pyroute2; another namespace
through a setns thread (vppagent.netns).

What a pod gets (Calico's CNI plugin, `dataplane/linux`): one interface (the requested name,
eth0) holding its addresses as /32 and /128; for IPv4 a link-scope route to 169.254.1.1 and the
routes through it; for IPv6 the routes through the other end's link-local address
(fe80::ecee:eeff:feee:eeee, the EUI-64 address of ee:ee:ee:ee:ee:ee, the MAC on the other end).
Which routes: `pod_routes`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vppagent.netns import call_in_netns
from vppagent.pods.spec import PodDelete, PodSpec

HOST_MAC = "ee:ee:ee:ee:ee:ee"  # the MAC on the node's (or VPP's) end of every pod link, as Calico's
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_MAC
RT_SCOPE_LINK = 253
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02  # linux/if_addr.h (0x80 is IFA_F_PERMANENT: the address stayed tentative for DAD)

DEFAULT_V4 = ipaddress.ip_network("0.0.0.0/0")
DEFAULT_V6 = ipaddress.ip_network("::/0")

_T = TypeVar("_T")
Route = ipaddress.IPv4Network | ipaddress.IPv6Network


def pod_routes(spec: PodSpec) -> list[tuple[Route, str]]:
    """(destination, gateway) for the pod's routing table, as Calico's CNI plugin decides them:
    no routes in the request means the default routes of both families; given routes are used
    as they are, each family only where the pod has an address of it. So a request with only
    IPv4 routes gives a dual-stack pod no IPv6 route (k8s.go: DefaultRoutes only when the CNI
    config names none; DoNetworking: each family's routes from that list)."""
    routes: list[Route] = list(spec.routes) or [DEFAULT_V4, DEFAULT_V6]
    out: list[tuple[Route, str]] = []
    if spec.ipv4:
        out += [(r, GATEWAY_V4) for r in routes if r.version == 4]
    if spec.ipv6:
        out += [(r, GATEWAY_V6) for r in routes if r.version == 6]
    return out


def in_netns(path: str | Path | None, action: Callable[[IPRoute], _T]) -> _T:
    """`action` with a netlink socket inside the network namespace at `path` (None: ours)."""

    def with_netlink() -> _T:
        with IPRoute() as ipr:
            return action(ipr)

    return call_in_netns(path, with_netlink)  # a setns thread: no fork inside the threaded agent


def create_veth(host: IPRoute, spec: PodSpec, peer_name: str) -> None:
    """A veth `spec.host_ifname` (MAC HOST_MAC) in `host`'s namespace, peer `peer_name` in the
    pod's. A link already holding the host name (a retry after a failed add) is removed first."""
    remove_link(host, spec.host_ifname)
    host.link("add", ifname=spec.host_ifname, kind="veth", address=HOST_MAC,
              peer={"ifname": peer_name, "net_ns_fd": str(spec.netns)})


def host_link_up(host: IPRoute, spec: PodSpec) -> int:
    """The node end up, with the pod's MTU; returns its index."""
    index: int = host.link_lookup(ifname=spec.host_ifname)[0]
    if spec.mtu:
        host.link("set", index=index, mtu=spec.mtu)
    host.link("set", index=index, state="up")
    return index


def rename_link(ipr: IPRoute, old: str, new: str) -> None:
    ipr.link("set", index=ipr.link_lookup(ifname=old)[0], ifname=new)


def configure_pod(pod: IPRoute, spec: PodSpec, *, gateway_neighbours: bool) -> str:
    """Inside the pod (`pod` is a netlink socket there): MTU, lo and the interface up, addresses,
    the link route to GATEWAY_V4 and `pod_routes`. `gateway_neighbours`: permanent neighbour
    entries for both gateways at HOST_MAC, for an other end that answers no ARP/ND for them.
    Returns the interface's MAC."""
    index = pod.link_lookup(ifname=spec.container_ifname)[0]
    if spec.mtu:
        pod.link("set", index=index, mtu=spec.mtu)
    for lo in pod.link_lookup(ifname="lo"):
        pod.link("set", index=lo, state="up")
    pod.link("set", index=index, state="up")
    for addr in spec.addresses:
        pod.addr("add", index=index, address=str(addr.ip), prefixlen=addr.max_prefixlen,
                 **({"flags": IFA_F_NODAD} if addr.version == 6 else {}))  # no DAD delay on a point-to-point link
    if spec.ipv4:
        pod.route("add", dst=f"{GATEWAY_V4}/32", oif=index, scope=RT_SCOPE_LINK)
    if gateway_neighbours:
        if spec.ipv4:
            pod.neigh("add", dst=GATEWAY_V4, lladdr=HOST_MAC, ifindex=index, state=NUD_PERMANENT)
        if spec.ipv6:
            pod.neigh("add", dst=GATEWAY_V6, lladdr=HOST_MAC, ifindex=index, state=NUD_PERMANENT,
                      family=socket.AF_INET6)
    for dst, gateway in pod_routes(spec):
        pod.route("add", dst=str(dst), gateway=gateway, oif=index,
                  **({"family": socket.AF_INET6} if dst.version == 6 else {}))
    mac: str = pod.get_links(index)[0].get_attr("IFLA_ADDRESS")
    return mac


def host_veth_of(request: PodDelete, node_netns: str | None = None) -> str | None:
    """The node-side name of the veth whose pod end is `request.container_ifname`, if any."""
    if not request.netns or not Path(request.netns).exists():
        return None  # the netns is gone, and with it the veth pair

    def peer_index(pod: IPRoute) -> int | None:
        found = pod.link_lookup(ifname=request.container_ifname)
        index: int | None = pod.get_links(found[0])[0].get_attr("IFLA_LINK") if found else None
        return index

    peer = in_netns(request.netns, peer_index)
    if not peer:
        return None

    def name_of(host: IPRoute) -> str | None:
        try:
            name: str = host.get_links(peer)[0].get_attr("IFLA_IFNAME")
        except (NetlinkError, IndexError):
            return None
        return name

    return in_netns(node_netns, name_of)


def remove_link(host: IPRoute, ifname: str) -> None:
    """Remove the link (a veth takes its peer with it); gone already is the goal."""
    for index in host.link_lookup(ifname=ifname):
        with contextlib.suppress(NetlinkError):
            host.link("del", index=index)
