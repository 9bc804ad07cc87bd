"""The Linux side of a VPP pod attachment: a veth for af_packet, and the container's addresses.

The pod sees one interface (the requested name, eth0) with its addresses as /32 and /128, a
link-scope route to 169.254.1.1 and a default route through it, like a Calico pod; for IPv6 the
default goes to fe80::ecee:eeff:feee:eeee. VPP does not answer ARP/ND for these gateways, so the
pod gets permanent neighbour entries for them pointing at the VPP side's MAC (ee:ee:ee:ee:ee:ee,
set on the VPP interface at creation).

`NetnsPlumbing` does this over netlink (pyroute2) in the node's network namespace (the one the
agent runs in, or `node_netns` for tests); `Plumbing` is the interface the driver uses, so tests of the tap
path against the emulator (where no tap appears in the pod) can stand in a recorder.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vppagent.netns import call_in_netns, netns_path
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import GATEWAY_V4, GATEWAY_V6, HOST_MAC, RT_SCOPE_LINK, AttachError

VPP_SIDE_MAC = HOST_MAC  # the MAC Calico's pods expect on the other end of their link
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x80

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Plumbing(Protocol):
    def create_veth(self, spec: PodSpec) -> None:
        """Host end `spec.host_ifname` in the node namespace, peer `spec.container_ifname` in the pod."""

    def remove_veth(self, host_ifname: str) -> None: ...

    def host_link_exists(self, host_ifname: str) -> bool: ...

    def host_veth_of(self, request: PodDelete) -> str | None:
        """The node-side name of the veth whose pod end is `request.container_ifname`."""

    def configure_container(self, spec: PodSpec) -> str:
        """Addresses, routes and gateway neighbours on the pod's interface; returns its MAC."""


class NetnsPlumbing:
    def __init__(self, node_netns: str | None = None) -> None:
        self.node_netns = None if node_netns is None else str(netns_path(node_netns))

    def create_veth(self, spec: PodSpec) -> None:
        temp = f"vpa{secrets.token_hex(5)}"  # renamed inside the pod, where the real name is free

        def make(host: IPRoute) -> None:
            for index in host.link_lookup(ifname=spec.host_ifname):
                host.link("del", index=index)  # a retry after a failed add
            try:
                host.link("add", ifname=spec.host_ifname, kind="veth", address=VPP_SIDE_MAC,
                          peer={"ifname": temp, "net_ns_fd": str(spec.netns)})
                index = host.link_lookup(ifname=spec.host_ifname)[0]
                if spec.mtu:
                    host.link("set", index=index, mtu=spec.mtu)
                host.link("set", index=index, state="up")
            except NetlinkError as exc:
                raise AttachError(f"veth {spec.host_ifname}: {exc}") from None

        in_netns(self.node_netns, make)
        in_netns(str(spec.netns), lambda pod: pod.link("set", index=pod.link_lookup(ifname=temp)[0],
                                                       ifname=spec.container_ifname))

    def remove_veth(self, host_ifname: str) -> None:
        def remove(host: IPRoute) -> None:
            for index in host.link_lookup(ifname=host_ifname):
                with contextlib.suppress(NetlinkError):
                    host.link("del", index=index)

        in_netns(self.node_netns, remove)

    def host_link_exists(self, host_ifname: str) -> bool:
        return bool(in_netns(self.node_netns, lambda host: host.link_lookup(ifname=host_ifname)))

    def host_veth_of(self, request: PodDelete) -> str | None:
        if not request.netns or not Path(request.netns).exists():
            return None

        def peer_index(pod: IPRoute) -> int | None:
            found = pod.link_lookup(ifname=request.container_ifname)
            return pod.get_links(found[0])[0].get_attr("IFLA_LINK") if found else None

        peer = in_netns(request.netns, peer_index)
        if not peer:
            return None

        def name_of(host: IPRoute) -> str | None:
            try:
                name: str = host.get_links(peer)[0].get_attr("IFLA_IFNAME")
            except (NetlinkError, IndexError):
                return None
            return name

        return in_netns(self.node_netns, name_of)

    def configure_container(self, spec: PodSpec) -> str:
        try:
            return in_netns(str(spec.netns), lambda pod: _configure(pod, spec))
        except (NetlinkError, OSError, IndexError) as exc:
            raise AttachError(f"pod {spec.workload}: configuring {spec.container_ifname}: {exc}") from None


def in_netns(path: str | None, action: Callable[[IPRoute], _T]) -> _T:
    """`action` with a netlink socket inside the network namespace at `path` (None: ours)."""

    def with_netlink() -> _T:
        with IPRoute() as ipr:
            return action(ipr)

    return call_in_netns(path, with_netlink)  # a setns thread: no fork inside the threaded agent


def _configure(pod: IPRoute, spec: PodSpec) -> str:
    index = pod.link_lookup(ifname=spec.container_ifname)[0]
    if spec.mtu:
        pod.link("set", index=index, mtu=spec.mtu)
    for lo in pod.link_lookup(ifname="lo"):
        pod.link("set", index=lo, state="up")
    pod.link("set", index=index, state="up")
    for addr in spec.addresses:
        pod.addr("add", index=index, address=str(addr.ip), prefixlen=addr.max_prefixlen,
                 **({"flags": IFA_F_NODAD} if addr.version == 6 else {}))
    if spec.ipv4:
        pod.route("add", dst=f"{GATEWAY_V4}/32", oif=index, scope=RT_SCOPE_LINK)
        pod.neigh("add", dst=GATEWAY_V4, lladdr=VPP_SIDE_MAC, ifindex=index, state=NUD_PERMANENT)
        for dst in [str(r) for r in spec.routes if r.version == 4] or ["0.0.0.0/0"]:
            pod.route("add", dst=dst, gateway=GATEWAY_V4, oif=index)
    if spec.ipv6:
        pod.neigh("add", dst=GATEWAY_V6, lladdr=VPP_SIDE_MAC, ifindex=index, state=NUD_PERMANENT,
                  family=socket.AF_INET6)
        for dst6 in [str(r) for r in spec.routes if r.version == 6] or ["::/0"]:
            pod.route("add", dst=dst6, gateway=GATEWAY_V6, oif=index, family=socket.AF_INET6)
    mac: str = pod.get_links(index)[0].get_attr("IFLA_ADDRESS")
    return mac
