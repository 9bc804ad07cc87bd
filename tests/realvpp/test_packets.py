"""Real packets through a real VPP 26.06, programmed by the agent from Felix's stream.

Felix's pipe -> felix-shim -> `vppagent run --driver vpp --pod-interface af_packet` -> VPP; the
pods were attached by the agent through Calico's CNI gRPC Add. For each random policy state
(cases.py: tiers, pass, default actions, profiles, negations, IP sets incl. a 600-member one the
driver puts in the classifier, named ports), real TCP, UDP and ICMP go between the pods and the
node-side peer, and whether each first packet arrived must equal the reference evaluator's
verdict; admitted TCP and ping are answered through VPP's sessions. A handful of states in CI,
many more with ``-m slow``.
"""

from __future__ import annotations

import ipaddress
import random
import time

import pytest

from tests.realvpp import RealVpp
from tests.realvpp.cases import POD_A, POD_B, PODS, PODS6, draw_case, expected, felix_messages, probes_for, web_objects
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.traffic import Captures, Conversation, Outcome, Probe, run
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
PROBES_PER_CASE = 16
EPHEMERAL_LOW = 32768  # pods' ephemeral ports start here (the classifier's documented scope)
POD_A_ADDRESS = ipaddress.ip_address(PODS[POD_A])
POD_A_ADDRESSES = {POD_A_ADDRESS, ipaddress.ip_address(PODS6[POD_A])}


def clear_sessions(vpp: RealVpp) -> None:
    """A new case asks about first packets: no session of an earlier case may answer for it."""
    vpp.cli("clear acl-plugin sessions")


def judge(outcomes: list[Outcome], state: DataplaneState, case_text: str, gated: bool) -> tuple[list[str], int]:
    """Disagreements with the evaluator, and how many answers were checked."""
    wrong: list[str] = []
    answers = 0
    for o in outcomes:
        pkt, want = o.probe.packet, expected(state, o.probe.packet)
        if o.arrived != want:
            wrong.append(f"{case_text} {pkt}: VPP {'passed' if o.arrived else 'dropped'}, "
                         f"evaluator {'allows' if want else 'denies'}")
            continue
        # The answer comes back through VPP's reflect session. Not checked where the docs say the
        # classifier (no sessions) drops it: replies to a pod's own non-ephemeral source port.
        replies_exempt = gated and pkt.src in POD_A_ADDRESSES and pkt.proto in (6, 17) and pkt.src_port < EPHEMERAL_LOW
        if o.answered is not None and not replies_exempt:
            answers += 1
            if o.answered != o.arrived:
                wrong.append(f"{case_text} {pkt}: first packet {'passed' if o.arrived else 'dropped'} "
                             f"but the answer {'came back' if o.answered else 'did not come back'}")
    return wrong, answers


def run_cases(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp, seed: int, cases: int) -> dict[str, int]:
    rng = random.Random(seed)
    netns_of = lab.pod_netns()
    captures = Captures([*sorted(set(netns_of.values())), lab.peer])
    figures = dict.fromkeys(("states", "ipv6_states", "probes", "allowed", "ipv6_allowed", "denied", "answers",
                             "gated_states", "classifier_states", "skipped_uncompilable"), 0)
    disagreements: list[str] = []
    try:
        while figures["states"] < cases:
            index = figures["states"] + figures["skipped_uncompilable"]
            # every run: a set in the classifier (the first state) and IPv6 (the second)
            case = draw_case(rng, big_set_first=figures["states"] == 0, v6=True if figures["states"] == 1 else None)
            if case is None:
                figures["skipped_uncompilable"] += 1
                continue
            report = agent.move_to(felix_messages(case))
            statuses = {row["workload_id"]: row["status"] for row in report["workload_endpoints"]}
            assert statuses.get(POD_A) in ("up", "down") and statuses.get(POD_B) == "up", (seed, index, report)
            gated = any(m.HasField("ipset_update") and m.ipset_update.id == "big" for m in agent.objects)
            figures["gated_states"] += gated
            figures["classifier_states"] += report["driver_status"]["classifier_chains"] > 0
            clear_sessions(vpp)
            probes = probes_for(rng, case, PROBES_PER_CASE, netns_of, lab.peer)
            lab.peer_owns(str(a) for p in probes for a in (p.packet.src, p.packet.dst) if str(a) not in netns_of)
            outcomes = run(probes, captures)
            wrong, answers = judge(outcomes, agent.felix_state, f"seed {seed} case {index} ({case.direction})", gated)
            disagreements += wrong
            figures["states"] += 1
            figures["ipv6_states"] += case.family == 6
            figures["probes"] += len(outcomes)
            figures["answers"] += answers
            for o in outcomes:
                figures["allowed" if o.arrived else "denied"] += 1
                figures["ipv6_allowed"] += o.arrived and case.family == 6
    finally:
        captures.close()
    assert not disagreements, f"{len(disagreements)} disagreements ({figures}):\n" + "\n".join(disagreements)
    return figures


def test_real_packets_agree_with_the_evaluator(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    figures = run_cases(agent, lab, vpp, seed=2, cases=8)
    print(f"real packets: {figures}")
    assert figures["allowed"] >= 10 and figures["denied"] >= 10, f"too one-sided to mean much: {figures}"
    assert figures["classifier_states"] >= 1, f"no state put a set in VPP's classifier: {figures}"
    assert figures["ipv6_allowed"] >= 1, f"no IPv6 packet was admitted: {figures}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_packets_agree_with_the_evaluator_long(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    figures = run_cases(agent, lab, vpp, seed=7, cases=120)
    print(f"real packets (long): {figures}")
    assert figures["allowed"] >= 200 and figures["denied"] >= 200, figures


def test_established_flow_survives_an_in_place_policy_change(agent: VppAgentProcess, lab: PodLab,
                                                             vpp: RealVpp, reclassify_off: None) -> None:
    """DESIGN §7, with reclassify-sessions off: a policy change rewrites the ACL in place
    (acl_add_replace), so VPP keeps the sessions: a TCP connection admitted before goes on both
    ways, while new flows follow the new rules (here: dropped). With it on (the default):
    tests/realvpp/test_reclassify.py."""
    pod, client_address = lab.pods[POD_A], "10.65.1.5"
    lab.peer_owns([client_address])
    agent.move_to(web_objects(admit_web=True))
    with Conversation(lab.peer, client_address, pod.netns, pod.address, 8080) as established:
        bound_before = vpp.cli("show acl-plugin interface")
        writes_before = agent.state()["driver_status"]["api_writes"]
        report = agent.move_to(web_objects(admit_web=False))
        new_flow = Packet(6, ipaddress.ip_address(client_address), POD_A_ADDRESS, 40200, 8080)
        assert not expected(agent.felix_state, new_flow), "the change must deny new flows like this one"
        assert report["driver_status"]["api_writes"] > writes_before, "the change reached VPP"
        assert vpp.cli("show acl-plugin interface") == bound_before, "ACLs replaced in place, none rebound"
        time.sleep(0.5)
        established.exchange("after the change")
        captures = Captures([pod.netns])
        try:
            [outcome] = run([Probe(new_flow, lab.peer, pod.netns)], captures)
        finally:
            captures.close()
        assert not outcome.arrived, "a new flow got through a policy that denies it"
        established.exchange("still")
