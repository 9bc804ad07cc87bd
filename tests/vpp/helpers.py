"""Shared helpers for the VPP driver tests (targets, pods as tagged loopbacks, states, packets)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpp_papi import VPPApiClient

from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.guard.sources import GUARD_OPAQUE, is_identity_mark
from vppagent.drivers.vpp.pods.linux import VPP_SIDE_MAC
from vppagent.drivers.vpp.tags import is_our_acl, workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.policy.packet import Packet as PolicyPacket
from vppagent.state.model import DataplaneState, WorkloadKey
from vppagent.vppsim import Direction, VppSim
from vppagent.vppsim import Packet as SimPacket

TEST_NETS = (ipaddress.ip_network("10.65.0.0/16"), ipaddress.ip_network("fd65::/16"),
             ipaddress.ip_network("10.66.0.0/16"))


def wkey(workload_id: str) -> WorkloadKey:
    return WorkloadKey("k8s", workload_id, "eth0")


@dataclass
class Target:
    """The emulator or a real VPP, with a raw vpp_papi client for setup and inspection."""

    socket_path: str
    sim: VppSim | None
    loopbacks: list[int] = field(default_factory=list)
    _raw: VPPApiClient | None = None

    @property
    def emulator(self) -> VppSim:
        assert self.sim is not None, "this check needs the emulator"
        return self.sim

    @property
    def raw(self) -> VPPApiClient:
        if self._raw is not None and self.sim is not None:
            try:  # the emulator may have been restarted under this client
                self._raw.api.control_ping()
            except OSError:
                self._raw = None
        if self._raw is None or not self._raw.transport.connected:
            self._raw = VPPApiClient(server_address=self.socket_path, bootstrapapi=True, read_timeout=5)
            self._raw.connect("vppagent-test")
        return self._raw

    def pod(self, workload_id: str) -> int:
        """A pod interface as CNI Add leaves it: a VPP interface tagged with the workload id."""
        sw_if_index = int(self.raw.api.create_loopback().sw_if_index)
        self.loopbacks.append(sw_if_index)
        self.raw.api.sw_interface_tag_add_del(is_add=True, sw_if_index=sw_if_index,
                                              tag=workload_tag(wkey(workload_id)))
        return sw_if_index

    def clear_input_classifiers(self, sw_if_index: int) -> None:
        """Detach what VPP records as the interface's input classifier (a source guard) before the
        interface goes: VPP would hand the record on to the next interface given this index
        (docs/vpp-driver.md, "Source guard")."""
        held = self.raw.api.classify_table_by_interface(sw_if_index=sw_if_index)
        for ip4, ip6 in ((held.ip4_table_id, NO_INDEX), (NO_INDEX, held.ip6_table_id)):
            if (ip4, ip6) != (NO_INDEX, NO_INDEX):
                self.raw.api.input_acl_set_interface(sw_if_index=sw_if_index, ip4_table_index=ip4, ip6_table_index=ip6,
                                                     l2_table_index=NO_INDEX, is_add=False)

    def guard_tables(self) -> set[int]:
        """The source guards' classifier tables (their sessions carry the guard's marks)."""
        raw = self.raw.api
        return {int(t) for t in raw.classify_table_ids().ids
                if any(int(s.opaque_index) == GUARD_OPAQUE or is_identity_mark(int(s.opaque_index))
                       for s in raw.classify_session_dump(table_id=t))}

    def bindings(self) -> dict[int, tuple[list[int], list[int]]]:
        out = {}
        for d in self.raw.api.acl_interface_list_dump(sw_if_index=NO_INDEX):
            acls = [int(a) for a in d.acls]
            if acls:
                out[int(d.sw_if_index)] = (acls[:d.n_input], acls[d.n_input:])
        return out

    def our_acls(self) -> dict[int, Any]:
        return {int(d.acl_index): d for d in self.raw.api.acl_dump(acl_index=NO_INDEX) if is_our_acl(str(d.tag))}

    def routes(self) -> dict[str, Any]:
        out = {}
        for is_ip6 in (False, True):
            for d in self.raw.api.ip_route_dump(table={"table_id": 0, "is_ip6": is_ip6}):
                out[str(d.route.prefix)] = d.route
        return out

    def cleanup(self) -> None:
        """Remove what tests made (real VPP is shared): loopbacks, our ACLs, test routes."""
        if self.sim is not None:  # a fresh emulator per test: nothing to undo
            if self._raw is not None and self._raw.transport.connected:
                self._raw.disconnect()
            return
        raw = self.raw
        for sw_if_index in self.loopbacks:
            with contextlib.suppress(Exception):
                self.clear_input_classifiers(sw_if_index)
            with contextlib.suppress(Exception):
                raw.api.delete_loopback(sw_if_index=sw_if_index)
        for table in self.guard_tables():  # attached nowhere now
            raw.api.classify_add_del_table(is_add=False, del_chain=False, table_index=table, match_n_vectors=1,
                                           mask_len=16, mask=bytes(16))
        for d in raw.api.acl_interface_list_dump(sw_if_index=NO_INDEX):
            if any(int(a) in self.our_acls() for a in d.acls):
                raw.api.acl_interface_set_acl_list(sw_if_index=d.sw_if_index, count=0, n_input=0, acls=[])
        for index in self.our_acls():
            raw.api.acl_del(acl_index=index)
        for prefix in self.routes():
            net = ipaddress.ip_network(prefix)
            if any(net.version == t.version and net.subnet_of(t) for t in TEST_NETS):  # type: ignore[arg-type]
                raw.api.ip_route_add_del(is_add=False, route={"table_id": 0, "prefix": prefix, "n_paths": 0,
                                                              "paths": []})
        raw.disconnect()
        self._raw = None


class FakePlumbing:
    """The Linux side recorded, not done: for the tap path against the emulator (no tap appears)."""

    def __init__(self) -> None:
        self.veths: dict[str, PodSpec] = {}
        self.configured: list[PodSpec] = []
        self.fail_configure: str | None = None

    def create_veth(self, spec: PodSpec) -> None:
        self.veths[spec.host_ifname] = spec

    def remove_veth(self, host_ifname: str) -> None:
        self.veths.pop(host_ifname, None)

    def host_link_exists(self, host_ifname: str) -> bool:
        return host_ifname in self.veths

    def host_veth_of(self, request: PodDelete) -> str | None:
        for name, spec in self.veths.items():
            if str(spec.netns) == request.netns and spec.container_ifname == request.container_ifname:
                return name
        return None

    def configure_container(self, spec: PodSpec) -> str:
        if self.fail_configure:
            from vppagent.pods.veth import AttachError

            raise AttachError(self.fail_configure)
        self.configured.append(spec)
        return "02:00:00:00:00:01"


def guard_writes(*, ipv4: int = 1, ipv6: int = 0) -> int:
    """What making one pod's source guard writes (guard/guards.py): per family a head table, its
    drop mark, a session per address and the attach; in IPv6 also fe80::/10's table and session."""
    return (3 + ipv4) + (5 + ipv6)


GUARD_REMOVAL_WRITES = 5  # a guard of host addresses goes: two detaches, three tables deleted


def tables_but_guards(target: Target) -> set[int]:
    """The classifier tables in VPP but the source guards'."""
    return {int(t) for t in target.raw.api.classify_table_ids().ids} - target.guard_tables()


def make_driver(target: Target, **kwargs: Any) -> VppDriver:
    conn = VppConnection(target.socket_path, request_timeout=kwargs.pop("request_timeout", 2.0))
    conn.connect()
    kwargs.setdefault("plumbing", FakePlumbing())
    return VppDriver(conn, **kwargs)


@contextlib.contextmanager
def resynced(target: Target, state: DataplaneState, **kwargs: Any) -> Iterator[VppDriver]:
    """A driver (`make_driver`) that has resynced `state` (answered ok); closed afterwards."""
    driver = make_driver(target, **kwargs)
    try:
        assert driver.resync(state).ok
        yield driver
    finally:
        driver.close()


def state_of(messages: Iterable[felix.ToDataplane]) -> DataplaneState:
    state = DataplaneState()
    for m in messages:
        state.apply(m)
    return state


def pod_spec(workload_id: str, addresses: Iterable[str], host_ifname: str = "calitest0",
             netns: str = "/proc/self/ns/net") -> PodSpec:
    return PodSpec(workload=wkey(workload_id), netns=Path(netns), container_ifname="eth0", host_ifname=host_ifname,
                   addresses=tuple(ipaddress.ip_interface(a) for a in addresses), routes=())


def sim_packet(pkt: PolicyPacket) -> SimPacket:
    if pkt.has_ports:
        return SimPacket.make(pkt.src, pkt.dst, pkt.proto, pkt.src_port, pkt.dst_port)
    if pkt.is_icmp:
        return SimPacket.make(pkt.src, pkt.dst, pkt.proto, pkt.icmp_type, pkt.icmp_code)
    return SimPacket.make(pkt.src, pkt.dst, pkt.proto)


def first_packet_allowed(sim: VppSim, sw_if_index: int, direction: str, pkt: PolicyPacket) -> bool:
    """The verdict VPP gives a flow's first packet at the pod's interface (no sessions)."""
    with sim.state.lock:
        sim.state.acl.clear_sessions()
    vpp_direction = Direction.INPUT if direction == "egress" else Direction.OUTPUT
    return sim.evaluate(sw_if_index, vpp_direction, sim_packet(pkt)).permitted


__all__ = ["VPP_SIDE_MAC", "FakePlumbing", "Target", "first_packet_allowed", "make_driver", "pod_spec",
           "sim_packet", "state_of", "wkey"]
