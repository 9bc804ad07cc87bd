"""Two IP sets in one classifier gate on a real VPP 26.06, with overlapping regions and a deny
between them: real TCP from the peer to pod-a, each first packet's fate equal to the evaluator's.

Policy "multi" on pod-a's ingress: allow tcp/8080 from set g1; deny tcp/8080 and tcp/22 from
10.65.1.16/28; allow tcp/8080 and tcp/22 from set g2. Both sets have 600 members (above the
driver's threshold), so both go to the classifier; their regions overlap (tcp/8080), so a member
of g2 inside the /28 must not be admitted on 8080 although L_U (both sets = every address) allows
it there through g1's rule: the admit sessions (member x entry) carry that, a chain admitting
members by source alone would not (docs/vpp-driver.md, "Large IP sets").
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.realvpp import RealVpp
from tests.realvpp.cases import POD_A, PODS, expected, pod_b_messages
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.traffic import Captures, Probe, run
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.packet import Packet

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
IN_G1, IN_G2, IN_G2_DENIED, IN_BOTH, IN_NONE = "10.65.1.5", "10.65.1.6", "10.65.1.20", "10.65.1.7", "10.65.1.8"


def padded(name: str, hosts: list[str], second_octet: int) -> felix.ToDataplane:
    return b.ipset(name, sorted({*hosts, *(f"10.{second_octet}.{i // 250}.{i % 250 + 1}" for i in range(600))}))


def multi_objects() -> list[felix.ToDataplane]:
    multi = b.policy("multi", namespace="default", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=[8080], src_ip_set_ids=["g1"]),
        b.rule("deny", protocol="tcp", dst_ports=[8080, 22], src_net=["10.65.1.16/28"]),
        b.rule("allow", protocol="tcp", dst_ports=[8080, 22], src_ip_set_ids=["g2"]),
    ], outbound=[b.rule("allow")])
    tiers = [b.tier("app", ingress=["multi"], egress=["multi"], namespace="default")]
    return [padded("g1", [IN_G1, IN_BOTH], 98), padded("g2", [IN_G2, IN_G2_DENIED, IN_BOTH], 97), multi,
            b.workload(POD_A, "calipoda", ipv4=[f"{PODS[POD_A]}/32"], tiers=tiers), *pod_b_messages()]


def test_two_sets_in_one_gate_agree_with_the_evaluator(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    pod = lab.pods[POD_A]
    sources = (IN_G1, IN_G2, IN_G2_DENIED, IN_BOTH, IN_NONE)
    lab.peer_owns(sources)
    report = agent.move_to(multi_objects())
    status = report["driver_status"]
    assert status["gated_lists"] >= 1 and status["classifier_chains"] >= 1, status
    tables = vpp.cli("show classify tables verbose")
    assert "mask 000000000000000000ff0000ffffffff000000000000ffff" in tables, "an admit table: proto, source, port"
    acl_rules = vpp.cli("show acl-plugin acl")
    assert "10.97." not in acl_rules and "10.98." not in acl_rules, "the sets' members are in no ACL"
    vpp.cli("clear acl-plugin sessions")
    probes = [Probe(Packet(6, ipaddress.ip_address(src), ipaddress.ip_address(PODS[POD_A]), 40300 + i, port),
                    lab.peer, pod.netns)
              for i, (src, port) in enumerate((s, p) for s in sources for p in (8080, 22))]
    captures = Captures([pod.netns, lab.peer])
    try:
        outcomes = run(probes, captures)
    finally:
        captures.close()
    verdicts = {(str(o.probe.packet.src), o.probe.packet.dst_port): o.arrived for o in outcomes}
    wrong = [f"{o.probe.packet}: VPP {'passed' if o.arrived else 'dropped'}"
             for o in outcomes if o.arrived != expected(agent.felix_state, o.probe.packet)]
    assert not wrong, wrong
    # the cases the design turns on, spelled out (the evaluator agrees, above)
    assert verdicts[(IN_G1, 8080)] and verdicts[(IN_G2, 22)] and verdicts[(IN_BOTH, 22)]
    assert not verdicts[(IN_G2_DENIED, 8080)], "a g2 member in the denied /28, on g1's port"
    assert not verdicts[(IN_G1, 22)] and not verdicts[(IN_NONE, 8080)]
