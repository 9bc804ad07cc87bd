"""The Linux side of a VPP pod, as the attacher needs it: `Plumbing`, and `NetnsPlumbing`, which
does it with vppagent.pods.linux (the one definition of a pod's Linux side, shared with the kernel
attachment).

af_packet needs a veth (VPP takes the node end); a tap's pod end is created by VPP. Either way the
pod's interface is then configured like a Calico pod's, plus permanent neighbour entries for
both gateways at the VPP side's MAC. `NetnsPlumbing` works in the node's network namespace (the
one the agent runs in, or `node_netns` for tests); tests of the tap path against the emulator
(where no tap appears in the pod) stand in a recorder for it.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vppagent.netns import netns_path
from vppagent.pods import linux
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import AttachError

VPP_SIDE_MAC = linux.HOST_MAC  # the MAC Calico's pods expect on the other end of their link


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
            try:
                linux.create_veth(host, spec, temp)
                linux.host_link_up(host, spec)
            except NetlinkError as exc:
                raise AttachError(f"veth {spec.host_ifname}: {exc}") from None

        linux.in_netns(self.node_netns, make)
        linux.in_netns(spec.netns, lambda pod: linux.rename_link(pod, temp, spec.container_ifname))

    def remove_veth(self, host_ifname: str) -> None:
        linux.in_netns(self.node_netns, lambda host: linux.remove_link(host, host_ifname))

    def host_link_exists(self, host_ifname: str) -> bool:
        return bool(linux.in_netns(self.node_netns, lambda host: host.link_lookup(ifname=host_ifname)))

    def host_veth_of(self, request: PodDelete) -> str | None:
        return linux.host_veth_of(request, self.node_netns)

    def configure_container(self, spec: PodSpec) -> str:
        try:
            return linux.in_netns(spec.netns, lambda pod: linux.configure_pod(pod, spec, gateway_neighbours=True))
        except (NetlinkError, OSError, IndexError) as exc:
            raise AttachError(f"pod {spec.workload}: configuring {spec.container_ifname}: {exc}") from None
