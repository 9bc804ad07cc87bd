"""Kernel pod attachment, as Calico's CNI plugin does it: a veth pair into the pod's netns.

Container side: the requested name (eth0), the pod's addresses as /32 and /128, a link-scope
route to 169.254.1.1 and a default route through it (the host answers by proxy ARP), and for
IPv6 a default route to the host side's link-local address (from its fixed MAC). Host side:
the requested cali* name, MAC ee:ee:ee:ee:ee:ee, up, proxy ARP on, and a /32 or /128 route per
pod address. Everything goes through netlink (pyroute2), the pod side from a thread inside the pod's netns
(vppagent.netns: no fork); sysctls are files under /proc/sys.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vppagent.netns import call_in_netns
from vppagent.pods.spec import PodDelete, PodSpec

log = logging.getLogger(__name__)

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_MAC
RT_SCOPE_LINK = 253
ROUTE_PROTOCOL = 0xC6  # our own rtm_protocol tag for host routes to pods ("vppagent", 198)


class AttachError(RuntimeError):
    """The kernel refused part of an attachment; the message names the interface and step."""


@dataclass(frozen=True)
class Attachment:
    host_ifname: str
    container_mac: str


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


def _host_sysctls(ifname: str, v6: bool) -> None:
    _sysctl(f"net/ipv4/conf/{ifname}/proxy_arp", "1")
    _sysctl(f"net/ipv4/neigh/{ifname}/proxy_delay", "0")
    _sysctl(f"net/ipv4/conf/{ifname}/forwarding", "1")
    if v6:
        _sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")
        _sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0")
        _sysctl(f"net/ipv6/conf/{ifname}/forwarding", "1")


class VethAttacher:
    """Creates and removes pod veths in the current (node) network namespace."""

    def add(self, spec: PodSpec) -> Attachment:
        temp = f"vpa{secrets.token_hex(5)}"  # created under a temporary name, renamed in the pod
        with IPRoute() as host:
            if host.link_lookup(ifname=spec.host_ifname):
                self._remove_host_link(host, spec.host_ifname)  # a retry after a failed add
            try:
                host.link("add", ifname=spec.host_ifname, kind="veth", address=HOST_MAC,
                          peer={"ifname": temp, "net_ns_fd": str(spec.netns)})
            except NetlinkError as exc:
                raise AttachError(f"veth {spec.host_ifname}: create failed: {exc}") from None
            try:
                mac = self._configure_container(spec, temp)
                self._configure_host(host, spec)
            except (NetlinkError, OSError) as exc:
                self._remove_host_link(host, spec.host_ifname)
                raise AttachError(f"pod {spec.workload}: {exc}") from None
            except BaseException:
                self._remove_host_link(host, spec.host_ifname)  # never leave half a pod behind
                raise
        return Attachment(spec.host_ifname, mac)

    def _configure_container(self, spec: PodSpec, temp: str) -> str:
        return call_in_netns(spec.netns, lambda: self._configure_container_here(spec, temp))

    @staticmethod
    def _configure_container_here(spec: PodSpec, temp: str) -> str:
        with IPRoute() as pod:
            index = pod.link_lookup(ifname=temp)[0]
            pod.link("set", index=index, ifname=spec.container_ifname)
            if spec.mtu:
                pod.link("set", index=index, mtu=spec.mtu)
            lo = pod.link_lookup(ifname="lo")
            if lo:
                pod.link("set", index=lo[0], state="up")
            pod.link("set", index=index, state="up")
            for addr in spec.addresses:
                pod.addr("add", index=index, address=str(addr.ip), prefixlen=addr.max_prefixlen,
                         **({"flags": 0x80} if addr.version == 6 else {}))  # IFA_F_NODAD: no DAD delay
            if spec.ipv4:
                pod.route("add", dst=f"{GATEWAY_V4}/32", oif=index, scope=RT_SCOPE_LINK)
                for dst in spec.routes or [ipaddress.ip_network("0.0.0.0/0")]:
                    if dst.version == 4:
                        pod.route("add", dst=str(dst), gateway=GATEWAY_V4, oif=index)
            if spec.ipv6:
                for dst in spec.routes or [ipaddress.ip_network("::/0")]:
                    if dst.version == 6:
                        pod.route("add", dst=str(dst), gateway=GATEWAY_V6, oif=index, family=socket.AF_INET6)
            mac: str = pod.get_links(index)[0].get_attr("IFLA_ADDRESS")
            return mac

    def _configure_host(self, host: IPRoute, spec: PodSpec) -> None:
        index = host.link_lookup(ifname=spec.host_ifname)[0]
        if spec.mtu:
            host.link("set", index=index, mtu=spec.mtu)
        host.link("set", index=index, state="up")
        _host_sysctls(spec.host_ifname, v6=bool(spec.ipv6))
        for addr in spec.addresses:
            host.route("replace", dst=f"{addr.ip}/{addr.max_prefixlen}", oif=index, scope=RT_SCOPE_LINK,
                       proto=ROUTE_PROTOCOL, family=socket.AF_INET if addr.version == 4 else socket.AF_INET6)

    def delete(self, request: PodDelete) -> str | None:
        """Remove the pod's veth (its routes go with it). Returns the host name, if one existed."""
        host_ifname = self._host_side_of(request)
        if host_ifname is None:
            return None
        with IPRoute() as host:
            self._remove_host_link(host, host_ifname)
        return host_ifname

    def _host_side_of(self, request: PodDelete) -> str | None:
        if not request.netns or not Path(request.netns).exists():
            return None  # the netns is gone, and with it the veth pair

        def peer_of_container_side() -> int | None:
            with IPRoute() as pod:
                found = pod.link_lookup(ifname=request.container_ifname)
                if not found:
                    return None
                index: int | None = pod.get_links(found[0])[0].get_attr("IFLA_LINK")
                return index

        peer_index = call_in_netns(request.netns, peer_of_container_side)
        if not peer_index:
            return None
        with IPRoute() as host:
            try:
                name: str = host.get_links(peer_index)[0].get_attr("IFLA_IFNAME")
            except (NetlinkError, IndexError):
                return None
            return name

    @staticmethod
    def _remove_host_link(host: IPRoute, ifname: str) -> None:
        for index in host.link_lookup(ifname=ifname):
            with contextlib.suppress(NetlinkError):  # already gone: that is the goal
                host.link("del", index=index)
