"""IP on pod interfaces: what makes a pod interface forward in VPP, and its removal.

A VPP interface routes IPv4 only with an address and IPv6 only once enabled. Pods get neither an
address of their own on the VPP side nor a subnet, so (as Calico VPP and networking-vpp do):

- IPv4: the pod interface is unnumbered to the node's pod gateway, a loopback the driver owns
  (tag `vpa1:gw`) holding 169.254.1.1/32 — the address the pod's default route points at
  (vppagent/pods/linux.py), so the gateway VPP answers ARP for on the pod's link is the one the pod uses.
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

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.tags import GATEWAY_TAG
from vppagent.pods.linux import GATEWAY_V4
from vppagent.pods.spec import PodSpec

log = logging.getLogger(__name__)


def gateway_interface(calls: VppCalls, programmed: Programmed) -> int:
    """The pod gateway loopback, created (with 169.254.1.1/32, up) the first time a pod needs it."""
    for info in programmed.interfaces.values():
        if info.tag == GATEWAY_TAG:
            return info.sw_if_index
    sw_if_index = calls.create_loopback("pod gateway loopback")
    calls.set_tag(sw_if_index, GATEWAY_TAG, "tag of the pod gateway")
    calls.add_address(sw_if_index, f"{GATEWAY_V4}/32", "pod gateway address")
    calls.admin_up(sw_if_index, "pod gateway up")
    programmed.interfaces[sw_if_index] = InterfaceInfo(sw_if_index, f"loop{sw_if_index}", GATEWAY_TAG, "Loopback")
    return sw_if_index


def enable_ip(calls: VppCalls, programmed: Programmed, sw_if_index: int) -> None:
    """IPv4 (unnumbered to the gateway) and IPv6 on a pod interface."""
    gateway = gateway_interface(calls, programmed)
    calls.set_unnumbered(sw_if_index, gateway, add=True)
    calls.ip6_enable(sw_if_index, enable=True)


def add_neighbors(calls: VppCalls, spec: PodSpec, sw_if_index: int, mac: str) -> None:
    for address in spec.addresses:
        calls.neighbor_add(sw_if_index, address.ip, mac, f"neighbour {address.ip} of {spec.workload}")


def disable_ip(calls: VppCalls, programmed: Programmed, sw_if_index: int,
               addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface], mac: str) -> None:
    """Undo enable_ip and add_neighbors (what is already gone is fine)."""
    for address in addresses:
        calls.neighbor_del(sw_if_index, address.ip, mac)
    gateway = next((i.sw_if_index for i in programmed.interfaces.values() if i.tag == GATEWAY_TAG), None)
    if gateway is not None:
        calls.set_unnumbered(sw_if_index, gateway, add=False)
    calls.ip6_enable(sw_if_index, enable=False)
