"""Kernel pod attachment, as Calico's CNI plugin does it: a veth pair into the pod's netns.

Pod side: linux.py (addresses, the 169.254.1.1 / fe80::ecee:eeff:feee:eeee gateways, routes; the
kernel answers for the gateways, so no neighbour entries). Host side: the requested cali* name, MAC
ee:ee:ee:ee:ee:ee, up, proxy ARP on, and a /32 or /128 route per pod address. Sysctls are files
under /proc/sys.
"""

from __future__ import annotations

import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vppagent.netns import call_in_netns
from vppagent.pods.linux import (
    RT_SCOPE_LINK,
    configure_pod,
    create_veth,
    host_link_up,
    host_veth_of,
    remove_link,
    rename_link,
)
from vppagent.pods.spec import PodDelete, PodSpec

log = logging.getLogger(__name__)

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
            try:
                create_veth(host, spec, temp)
            except NetlinkError as exc:
                raise AttachError(f"veth {spec.host_ifname}: create failed: {exc}") from None
            try:
                mac = self._configure_container(spec, temp)
                self._configure_host(host, spec)
            except (NetlinkError, OSError) as exc:
                remove_link(host, spec.host_ifname)
                raise AttachError(f"pod {spec.workload}: {exc}") from None
            except BaseException:
                remove_link(host, spec.host_ifname)  # never leave half a pod behind
                raise
        return Attachment(spec.host_ifname, mac)

    @staticmethod
    def _configure_container(spec: PodSpec, temp: str) -> str:
        def configure() -> str:
            with IPRoute() as pod:
                rename_link(pod, temp, spec.container_ifname)
                return configure_pod(pod, spec, gateway_neighbours=False)

        return call_in_netns(spec.netns, configure)

    @staticmethod
    def _configure_host(host: IPRoute, spec: PodSpec) -> None:
        index = host_link_up(host, spec)
        _host_sysctls(spec.host_ifname, v6=bool(spec.ipv6))
        for addr in spec.addresses:
            host.route("replace", dst=f"{addr.ip}/{addr.max_prefixlen}", oif=index, scope=RT_SCOPE_LINK,
                       proto=ROUTE_PROTOCOL, family=socket.AF_INET if addr.version == 4 else socket.AF_INET6)

    def delete(self, request: PodDelete) -> str | None:
        """Remove the pod's veth (its routes go with it). Returns the host name, if one existed."""
        host_ifname = host_veth_of(request)
        if host_ifname is None:
            return None
        with IPRoute() as host:
            remove_link(host, host_ifname)
        return host_ifname
