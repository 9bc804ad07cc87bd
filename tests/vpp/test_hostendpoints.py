"""Host endpoints on VPP: normal policy for traffic to and from the host's addresses on the named
interface, applyOnForward tiers for forwarded traffic, untracked/pre-DNAT refused with status
"error" (never silently ignored), and the binding removed with the endpoint."""

from __future__ import annotations

import ipaddress

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.evaluate import hep_chain, host_endpoint_verdict
from vppagent.policy.packet import Packet as PolicyPacket
from vppagent.state.diff import diff_states
from vppagent.state.model import Kind
from vppagent.vppsim import Direction, Packet

HOST = "198.18.0.1"


def uplink(target: Target) -> int:
    raw = target.raw
    sw_if_index = int(raw.api.create_loopback().sw_if_index)
    target.loopbacks.append(sw_if_index)
    raw.api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=True, prefix=f"{HOST}/24")
    return sw_if_index


def hep_state(**tiers: list[felix.TierInfo]) -> list[felix.ToDataplane]:
    return [
        b.config({"FailsafeInboundHostPorts": "tcp:22", "FailsafeOutboundHostPorts": "udp:53"}),
        b.policy("host-in", inbound=[b.rule("allow", protocol="tcp", dst_ports=[443])],
                 outbound=[b.rule("allow")]),
        b.policy("fwd", inbound=[b.rule("deny", protocol="tcp", dst_ports=[23])]),
        b.host_endpoint("uplink", "loop0", **tiers),  # type: ignore[arg-type]
    ]


def test_host_endpoint_policy_on_the_uplink(target: Target) -> None:
    sw_if_index = uplink(target)
    driver = make_driver(target)
    try:
        state = state_of(hep_state(tiers=[b.tier("default", ingress=["host-in"], egress=["host-in"])],
                                   forward_tiers=[b.tier("fwd", ingress=["fwd"], default_action="Pass")]))
        report = driver.resync(state)
        assert report.ok and not report.failed
        acl_in, acl_out = target.bindings()[sw_if_index]
        assert len(acl_in) == len(acl_out) == 1
        if target.sim is None:
            return
        sim = target.emulator
        for port, to_host in ((443, True), (80, True), (22, True), (23, False), (80, False)):
            dst = HOST if to_host else "10.65.0.2"
            pkt = PolicyPacket(6, ipaddress.ip_address("203.0.113.9"), ipaddress.ip_address(dst), 40000, port)
            # to the host: the normal chain; forwarded: anything the forward chain does not deny
            # (a pass or no verdict leaves it to the pod's own chain on its interface)
            expected = host_endpoint_verdict(state, "uplink", "ingress", pkt).allowed if to_host else \
                hep_chain(state, "uplink", "forward", "ingress", pkt).action != "deny"
            with sim.state.lock:
                sim.state.acl.clear_sessions()
            got = sim.evaluate(sw_if_index, Direction.INPUT, Packet.make("203.0.113.9", dst, "tcp", 40000, port))
            assert got.permitted == expected, (dst, port)
    finally:
        driver.close()


def test_untracked_and_pre_dnat_are_refused_not_ignored(target: Target) -> None:
    sw_if_index = uplink(target)
    driver = make_driver(target)
    try:
        state = state_of(hep_state(untracked_tiers=[b.tier("raw", ingress=["host-in"])]))
        report = driver.resync(state)
        reason = report.failed[(Kind.HOST_ENDPOINT, "uplink")]
        assert "unsupported on VPP" in reason
        assert sw_if_index not in target.bindings()
        # the endpoint loses its untracked tier: it is programmed; then it goes: unbound again
        ok = state_of(hep_state(tiers=[b.tier("default", ingress=["host-in"])]))
        assert not driver.apply(diff_states(state, ok), ok).failed
        assert sw_if_index in target.bindings()
        gone = ok.copy()
        gone.tables[Kind.HOST_ENDPOINT].clear()
        assert driver.apply(diff_states(ok, gone), gone).ok
        assert sw_if_index not in target.bindings() and target.our_acls() == {}
    finally:
        driver.close()


def test_an_af_packet_uplink_is_found_by_its_linux_name() -> None:
    """Felix's host endpoint names eth0; VPP calls the af_packet interface on it host-eth0."""
    from vppagent.drivers.vpp.acl.hostendpoints import interfaces_by_name
    from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
    from vppagent.drivers.vpp.tags import workload_tag
    from vppagent.state.model import WorkloadKey

    programmed = Programmed()
    for info in (InterfaceInfo(1, "host-eth0", "", "af-packet"), InterfaceInfo(2, "host-eth1", "", "af-packet"),
                 InterfaceInfo(3, "eth1", "", "dpdk"), InterfaceInfo(4, "host-loop", "", "Loopback"),
                 InterfaceInfo(5, "host-cali1", workload_tag(WorkloadKey("k8s", "ns/p", "eth0")), "af-packet")):
        programmed.interfaces[info.sw_if_index] = info
    by_name = interfaces_by_name(programmed)
    assert by_name["eth0"] == by_name["host-eth0"] == 1
    assert by_name["eth1"] == 3, "VPP's own name wins over the af_packet spelling"
    assert "loop" not in by_name, "only af_packet interfaces get their Linux name"
    assert "cali1" not in by_name and "host-cali1" not in by_name, "pods are never host endpoints"
