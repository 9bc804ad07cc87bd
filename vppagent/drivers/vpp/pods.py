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

from vppagent.drivers.vpp.connection import ApiRefused, VppConnection
from vppagent.drivers.vpp.plumbing import VPP_SIDE_MAC, Plumbing
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import AttachError

log = logging.getLogger(__name__)

PodKind = Literal["tap", "af_packet"]
FoundKind = Literal["tap", "af_packet", "veth"]
NO_INDEX = 0xFFFFFFFF
ADMIN_UP = 1
AF_PACKET_MODE_ETHERNET = 1
AF_PACKET_FLAGS = 3  # QDISC_BYPASS | CKSUM_GSO
IF_ALREADY_EXISTS = -79
SYSCALL_ERROR_1 = -11


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
    def __init__(self, conn: VppConnection, kind: PodKind, plumbing: Plumbing) -> None:
        self.conn = conn
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
        namespace = str(spec.netns)
        try:
            reply = self.conn.call(
                "tap_create_v3", id=NO_INDEX, use_random_mac=False, mac_address=VPP_SIDE_MAC,
                num_rx_queues=1, num_tx_queues=0, tx_ring_sz=256, rx_ring_sz=256,
                host_mtu_set=bool(spec.mtu), host_mtu_size=spec.mtu, host_namespace_set=True,
                host_namespace=namespace, host_if_name_set=True, host_if_name=spec.container_ifname,
                tag=workload_tag(spec.workload), tap_flags=0, what=f"tap for {spec.workload}")
        except ApiRefused as exc:
            hint = " (no /dev/vhost-net on this host: use --pod-interface af_packet)" \
                if exc.retval == SYSCALL_ERROR_1 else ""
            raise AttachError(f"{exc}{hint}") from None
        return int(reply.sw_if_index)

    def create_on_existing_veth(self, spec: PodSpec) -> int:
        """af_packet on a veth that survived a VPP restart."""
        return self._create_af_packet(spec)

    def _create_af_packet(self, spec: PodSpec) -> int:
        try:
            reply = self.conn.call(
                "af_packet_create_v3", accept=(0, IF_ALREADY_EXISTS), mode=AF_PACKET_MODE_ETHERNET,
                hw_addr=VPP_SIDE_MAC, use_random_hw_addr=False, host_if_name=spec.host_ifname,
                rx_frame_size=0, tx_frame_size=0, rx_frames_per_block=0, tx_frames_per_block=0,
                flags=AF_PACKET_FLAGS, num_rx_queues=1, num_tx_queues=1,
                what=f"af_packet on {spec.host_ifname} for {spec.workload}")
            sw_if_index = int(reply.sw_if_index)
            self.conn.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw_if_index,
                           tag=workload_tag(spec.workload), what=f"tag of {spec.host_ifname}")
        except ApiRefused as exc:
            raise AttachError(str(exc)) from None
        return sw_if_index

    def admin_up(self, sw_if_index: int) -> None:
        try:
            self.conn.call("sw_interface_set_flags", sw_if_index=sw_if_index, flags=ADMIN_UP,
                           what=f"interface {sw_if_index} up")
        except ApiRefused as exc:
            raise AttachError(str(exc)) from None

    def delete(self, found: FoundPod) -> None:
        """Remove the VPP interface (VPP drops its ACL bindings with it) and the veth."""
        if found.kind == "tap":
            self.conn.call("tap_delete_v2", sw_if_index=found.sw_if_index, what=f"tap {found.sw_if_index}")
            return
        if found.kind == "af_packet":
            self.conn.call("af_packet_delete", host_if_name=found.host_ifname,
                           what=f"af_packet {found.host_ifname}")
        self.plumbing.remove_veth(found.host_ifname)

    def find(self, request: PodDelete) -> FoundPod | None:
        """The pod's interface, from VPP's dumps (and the veth peer for af_packet)."""
        for tap in self.conn.dump("sw_interface_tap_v2_dump", sw_if_index=NO_INDEX):
            if str(tap.host_namespace) == request.netns and str(tap.host_if_name) == request.container_ifname:
                return FoundPod("tap", int(tap.sw_if_index), request.container_ifname)
        host = self.plumbing.host_veth_of(request)
        if host is None:
            return None
        for details in self.conn.dump("af_packet_dump"):
            if str(details.host_if_name) == host:
                return FoundPod("af_packet", int(details.sw_if_index), host)
        return FoundPod("veth", NO_INDEX, host)
