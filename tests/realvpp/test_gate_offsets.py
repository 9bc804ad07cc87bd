"""The classifier gate's fixed offsets on a real VPP 26.06 (docs/vpp-driver.md, "Large IP sets"):
a TCP SYN from a member of no set, to a port only a gated set may reach, with IPv4 options (IHL 6,
so the "port" the classifier reads is option bytes) must not reach the pod. Policy says deny; here
VPP 26.06 did not deliver such a SYN (a member's neither), so this guards that path, not the gate.
And the same over IPv6 with a destination options header, which did reach the pod while IPv6 was
gated (the next header the classifier reads is then 60, no gap matched, L_U had the set as ::/0)."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.realvpp import RealVpp
from tests.realvpp.cases import POD_A, PODS, PODS6, pod_b_messages
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.test_multiset_gate import IN_NONE, multi_objects
from vppagent.lab import builders as b
from vppagent.netns import call_in_netns

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
NOPS = b"\x01\x01\x01\x00"  # three NOPs and the end of options: IHL 6


def syn(src: str, dst: str, port: int, sport: int, options: bytes = b"") -> bool:
    """Whether the SYN (with IPv4 options or an IPv6 destination options header) reached the pod
    (an answer, SYN-ACK or RST, came back)."""
    v6 = ":" in src
    with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if options:
            sock.setsockopt(*((socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS) if v6 else
                              (socket.IPPROTO_IP, socket.IP_OPTIONS)), options)
        sock.bind((src, sport))
        sock.settimeout(1.0)
        try:
            sock.connect((dst, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return True


def test_ipv4_options_do_not_reach_a_gated_port(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    lab.peer_owns((IN_NONE,))
    report = agent.move_to(multi_objects())
    assert report["driver_status"]["gated_lists"] >= 1
    vpp.cli("clear acl-plugin sessions")
    assert not call_in_netns(lab.peer, lambda: syn(IN_NONE, PODS[POD_A], 8080, 40556)), "plain: denied"
    vpp.cli("clear acl-plugin sessions")
    assert not call_in_netns(lab.peer, lambda: syn(IN_NONE, PODS[POD_A], 8080, 40555, NOPS)), "options: denied"


MEMBER6, NONE6 = "fd65:1::5", "fd65:1::8"
DSTOPTS = b"\x00\x00\x01\x04\x00\x00\x00\x00"  # a destination options header: PadN of 4 bytes


def test_ipv6_extension_headers_do_not_reach_a_gated_port(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    members = [MEMBER6, *(f"fd97::{i:x}" for i in range(1, 601))]
    v4 = [f"10.96.{i // 250}.{i % 250 + 1}" for i in range(600)]
    policy = b.policy("g6", namespace="default", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=[8080], src_ip_set_ids=["g6"]),
        b.rule("allow", protocol="tcp", dst_ports=[8081], src_ip_set_ids=["g4"])], outbound=[b.rule("allow")])
    tiers = [b.tier("app", ingress=["g6"], egress=["g6"], namespace="default")]
    lab.peer_owns((MEMBER6, NONE6))
    report = agent.move_to([b.ipset("g6", members), b.ipset("g4", v4), policy,
                            b.workload(POD_A, "calipoda", ipv4=[f"{PODS[POD_A]}/32"],
                                       ipv6=[f"{PODS6[POD_A]}/128"], tiers=tiers), *pod_b_messages()])
    assert report["driver_status"]["gated_lists"] >= 1, "g4 is gated"
    outcomes = {}
    for i, (src, options) in enumerate((s, o) for s in (MEMBER6, NONE6) for o in (b"", DSTOPTS)):
        vpp.cli("clear acl-plugin sessions")
        outcomes[(src, bool(options))] = call_in_netns(
            lab.peer, lambda: syn(src, PODS6[POD_A], 8080, 40600 + i, options))  # noqa: B023 (called at once)
    assert outcomes == {(MEMBER6, False): True, (MEMBER6, True): True, (NONE6, False): False, (NONE6, True): False}
