"""VPP pod interfaces: a tap whose host side VPP creates in the pod's netns, or a veth whose node
end VPP takes with af_packet (DESIGN.md section 7). Both carry the workload tag.

- tap: `tap_create_v3` with the pod's netns and interface name; it needs /dev/vhost-net on the
  host (without it VPP answers -11). VPP's side gets MAC ee:ee:ee:ee:ee:ee.
- af_packet: a veth pair (node end `host_ifname`, pod end `container_ifname`), then
  `af_packet_create_v3` on the node end with flags 3 (qdisc bypass + checksum/GSO offload: with 0,
  TCP fails on bad checksums), VPP MAC ee:ee:ee:ee:ee:ee.
Finding an attachment again needs no memory of it: taps by (host_namespace, host_if_name) from
`sw_interface_tap_v2_dump`, af_packets by the pod end's veth peer and `af_packet_dump`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.pods.linux import VPP_SIDE_MAC, Plumbing
from vppagent.drivers.vpp.pods.rxmode import set_interrupt
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import AttachError

log = logging.getLogger(__name__)

PodKind = Literal["tap", "af_packet"]
FoundKind = Literal["tap", "af_packet", "veth"]


@dataclass
class PodRecord:
    """A pod attached by this agent, kept to re-create its interface after a VPP restart."""

    spec: PodSpec
    kind: PodKind
    sw_if_index: int
    container_mac: str = ""

    @property
    def tag(self) -> str:
        return workload_tag(self.spec.workload)


@dataclass(frozen=True)
class FoundPod:
    """A pod's attachment as found; kind "veth": only the veth exists (VPP never took it)."""

    kind: FoundKind
    sw_if_index: int
    host_ifname: str


class PodInterfaces:
    def __init__(self, calls: VppCalls, kind: PodKind, plumbing: Plumbing) -> None:
        self.calls = calls
        self.kind = kind
        self.plumbing = plumbing

    def create(self, spec: PodSpec, kind: PodKind | None = None) -> int:
        """The VPP interface for the pod (and its veth for af_packet); returns sw_if_index, admin down."""
        kind = kind or self.kind
        if kind == "tap":
            return self._create_tap(spec)
        self.plumbing.create_veth(spec)
        try:
            return self._create_af_packet(spec)
        except BaseException:
            self.plumbing.remove_veth(spec.host_ifname)
            raise

    def _create_tap(self, spec: PodSpec) -> int:
        try:
            return self.calls.tap_create(netns=str(spec.netns), ifname=spec.container_ifname, mac=VPP_SIDE_MAC,
                                         mtu=spec.mtu, tag=workload_tag(spec.workload),
                                         what=f"tap for {spec.workload}")
        except ApiRefused as exc:
            hint = " (no /dev/vhost-net on this host: use --pod-interface af_packet)" \
                if exc.retval == ApiError.SYSCALL_ERROR_1 else ""
            raise AttachError(f"{exc}{hint}") from None

    def create_on_existing_veth(self, spec: PodSpec) -> int:
        """af_packet on a veth that survived a VPP restart."""
        return self._create_af_packet(spec)

    def _create_af_packet(self, spec: PodSpec) -> int:
        try:
            sw_if_index = self.calls.af_packet_create(spec.host_ifname, VPP_SIDE_MAC,
                                                      f"af_packet on {spec.host_ifname} for {spec.workload}")
            self.calls.set_tag(sw_if_index, workload_tag(spec.workload), f"tag of {spec.host_ifname}")
            set_interrupt(self.calls, sw_if_index, f"af_packet on {spec.host_ifname}")  # before admin up
        except ApiRefused as exc:
            raise AttachError(str(exc)) from None
        return sw_if_index

    def admin_up(self, sw_if_index: int) -> None:
        try:
            self.calls.admin_up(sw_if_index)
        except ApiRefused as exc:
            raise AttachError(str(exc)) from None

    def delete(self, found: FoundPod) -> None:
        """Remove the VPP interface (VPP drops its ACL bindings with it) and the veth."""
        if found.kind == "tap":
            self.calls.tap_delete(found.sw_if_index)
            return
        if found.kind == "af_packet":
            self.calls.af_packet_delete(found.host_ifname)
        self.plumbing.remove_veth(found.host_ifname)

    def find(self, request: PodDelete) -> FoundPod | None:
        """The pod's interface, from VPP's dumps (and the veth peer for af_packet)."""
        for tap in self.calls.taps():
            if tap.host_namespace == request.netns and tap.host_if_name == request.container_ifname:
                return FoundPod("tap", tap.sw_if_index, request.container_ifname)
        host = self.plumbing.host_veth_of(request)
        if host is None:
            return None
        for af_packet in self.calls.af_packets():
            if af_packet.host_if_name == host:
                return FoundPod("af_packet", af_packet.sw_if_index, host)
        return FoundPod("veth", NO_INDEX, host)
