"""IP on pod interfaces: what makes a pod interface forward in VPP, and its removal.

A VPP interface routes IPv4 only with an address and IPv6 only once enabled. Pods get neither an
address of their own on the VPP side nor a subnet, so (as Calico VPP and networking-vpp do):

- IPv4: the pod interface is unnumbered to the node's pod gateway, a loopback the driver owns
  (tag `vpa1:gw`) holding 169.254.1.1/32 — the address the pod's default route points at
  (plumbing.py), so the gateway VPP answers ARP for on the pod's link is the one the pod uses.
- IPv6: `sw_interface_ip6_enable_disable` gives the interface the link-local address VPP derives
  from its MAC, fe80::ecee:eeff:feee:eeee for ee:ee:ee:ee:ee:ee: the pod's IPv6 gateway.
- VPP → pod: a static neighbour per pod address pointing at the pod's MAC, so VPP never has to
  resolve pods (and a pod that does not answer ARP/ND still gets traffic).

Removal undoes each (before the interface goes; VPP would also drop them with the interface).
`sw_interface_ip6_enable_disable` counts enables (ip6_link.c takes a lock even when it answers
VALUE_EXIST), so the driver enables once per interface and treats VALUE_EXIST as already done.
"""

from __future__ import annotations

import ipaddress
import logging

from vppagent.drivers.vpp.connection import VppConnection
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.tags import GATEWAY_TAG
from vppagent.pods.spec import PodSpec
from vppagent.pods.veth import GATEWAY_V4

log = logging.getLogger(__name__)

ADMIN_UP = 1
IP_NEIGHBOR_FLAG_STATIC = 1
VALUE_EXIST = -81
IP6_NOT_ENABLED = -62
NO_SUCH_ENTRY = -6


def gateway_interface(conn: VppConnection, programmed: Programmed) -> int:
    """The pod gateway loopback, created (with 169.254.1.1/32, up) the first time a pod needs it."""
    for info in programmed.interfaces.values():
        if info.tag == GATEWAY_TAG:
            return info.sw_if_index
    reply = conn.call("create_loopback", mac_address="00:00:00:00:00:00", what="pod gateway loopback")
    sw_if_index = int(reply.sw_if_index)
    conn.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw_if_index, tag=GATEWAY_TAG,
              what="tag of the pod gateway")
    conn.call("sw_interface_add_del_address", sw_if_index=sw_if_index, is_add=True, del_all=False,
              prefix=f"{GATEWAY_V4}/32", what="pod gateway address")
    conn.call("sw_interface_set_flags", sw_if_index=sw_if_index, flags=ADMIN_UP, what="pod gateway up")
    programmed.interfaces[sw_if_index] = InterfaceInfo(sw_if_index, f"loop{sw_if_index}", GATEWAY_TAG, "Loopback")
    return sw_if_index


def enable_ip(conn: VppConnection, programmed: Programmed, sw_if_index: int) -> None:
    """IPv4 (unnumbered to the gateway) and IPv6 on a pod interface."""
    gateway = gateway_interface(conn, programmed)
    conn.call("sw_interface_set_unnumbered", sw_if_index=gateway, unnumbered_sw_if_index=sw_if_index, is_add=True,
              what=f"interface {sw_if_index} unnumbered to the pod gateway")
    conn.call("sw_interface_ip6_enable_disable", accept=(0, VALUE_EXIST), sw_if_index=sw_if_index, enable=True,
              what=f"IPv6 on interface {sw_if_index}")


def add_neighbors(conn: VppConnection, spec: PodSpec, sw_if_index: int, mac: str) -> None:
    for address in spec.addresses:
        conn.call("ip_neighbor_add_del", is_add=True, neighbor=_neighbor(sw_if_index, address.ip, mac),
                  what=f"neighbour {address.ip} of {spec.workload}")


def disable_ip(conn: VppConnection, programmed: Programmed, sw_if_index: int,
               addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface], mac: str) -> None:
    """Undo enable_ip and add_neighbors (what is already gone is fine)."""
    for address in addresses:
        conn.call("ip_neighbor_add_del", accept=(0, NO_SUCH_ENTRY), is_add=False,
                  neighbor=_neighbor(sw_if_index, address.ip, mac or "00:00:00:00:00:00"),
                  what=f"neighbour {address.ip} on {sw_if_index}")
    gateway = next((i.sw_if_index for i in programmed.interfaces.values() if i.tag == GATEWAY_TAG), None)
    if gateway is not None:
        conn.call("sw_interface_set_unnumbered", sw_if_index=gateway, unnumbered_sw_if_index=sw_if_index,
                  is_add=False, what=f"interface {sw_if_index} numbered again")
    conn.call("sw_interface_ip6_enable_disable", accept=(0, IP6_NOT_ENABLED), sw_if_index=sw_if_index,
              enable=False, what=f"IPv6 off on interface {sw_if_index}")


def _neighbor(sw_if_index: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, mac: str) -> dict[str, object]:
    return {"sw_if_index": sw_if_index, "flags": IP_NEIGHBOR_FLAG_STATIC, "mac_address": mac, "ip_address": str(ip)}
