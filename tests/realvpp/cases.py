"""Random policy states for the real-packet tests, as Felix would send them, and their probes.

The state under test is the policy core's ``random_case`` (IPv4): pod-a (10.65.0.2) carries it.
Every case also has pod-b (10.65.0.3, a profile that allows everything) so some probes run pod to
pod, and about half the cases add a policy allowing service ports from a set of 600 members (most
of them in 10.99.0.0/16, which no probe uses): above the driver's classifier threshold (500), in the
shape the classifier takes (docs/vpp-driver.md, "Large IP sets").

Successive cases reach the agent as Felix would move from one state to the next
(``VppAgentProcess.move_to``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from tests.realvpp.traffic import Probe
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import ENDPOINT, LOCAL, REMOTE, Case, random_case, random_packets
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState, WorkloadKey

POD_A, POD_B = ENDPOINT.workload_id, "default/pod-b"
PODS = {POD_A: "10.65.0.2", POD_B: "10.65.0.3"}
PODS6 = {POD_A: "fd65::2", POD_B: "fd65::3"}  # pod-a's as random_case's endpoint has it
POD_B_KEY = WorkloadKey("k8s", POD_B, "eth0")
BIG_SET_SIZE = 600
SENDABLE = (1, 6, 17, 58)  # ICMP, TCP, UDP, ICMPv6: sent by real sockets


def pod_b_messages() -> list[felix.ToDataplane]:
    return [b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
            b.workload(POD_B, "calipodb", ipv4=[f"{PODS[POD_B]}/32"], ipv6=[f"{PODS6[POD_B]}/128"], profiles=["open"])]


def with_big_set(rng: random.Random, case: Case, first: bool = False) -> Case:
    """The case (now ingress) plus a policy in one of its tiers: allow TCP or UDP service ports
    from set "big" (a few probe-reachable hosts + padding), so the driver gates it."""
    hosts = [h for net in (LOCAL[4], REMOTE[4]) for h in net if str(h) != PODS[POD_A]]
    members = {str(h) for h in rng.sample(hosts, rng.randint(1, 6))}
    members |= {f"10.99.{i // 250}.{i % 250 + 1}" for i in range(BIG_SET_SIZE - len(members))}
    rules = [felix.Rule(action="allow", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                        src_ip_set_ids=["big"],
                        dst_ports=[felix.PortRange(first=p, last=p + rng.choice((0, 0, 5)))
                                   for p in rng.sample((22, 53, 80, 443, 8080), rng.randint(1, 2))])
             for _ in range(rng.randint(1, 2))]
    gated = felix.PolicyID(name="gated", namespace="default")
    extra = [b.ipset("big", sorted(members)),
             felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(
                 id=gated, policy=felix.Policy(inbound_rules=rules)))]
    messages = []
    for m in case.messages:
        if m.HasField("workload_endpoint_update"):
            m = felix.ToDataplane.FromString(m.SerializeToString())
            tiers = m.workload_endpoint_update.endpoint.tiers
            if first or rng.random() < 0.5:  # first: its set decides, so the driver gates it
                tiers[0].ingress_policies.insert(0, gated)
            else:  # anywhere: the gate may or may not be worth it (gate.py decides)
                tier = tiers[rng.randrange(len(tiers))]
                tier.ingress_policies.insert(rng.randint(0, len(tier.ingress_policies)), gated)
            messages += extra
        messages.append(m)
    return Case(messages, case.endpoint, "ingress", 4)


def draw_case(rng: random.Random, big_set_first: bool = False, v6: bool | None = None) -> Case | None:
    """A case, or None when VPP's ACLs cannot express it (the compiler refuses: not a packet case).
    `big_set_first`: an IPv4 case with the big set's policy, first in the first tier. Unless `v6`
    says, a quarter of the others are IPv6 (the big set is IPv4: those never have it)."""
    case = random_case(rng, v6=False if big_set_first else v6)
    if case.family == 4 and (big_set_first or rng.random() < 0.5):
        case = with_big_set(rng, case, first=big_set_first)
    try:
        for direction in ("ingress", "egress"):
            compile_endpoint(case.state, case.endpoint, direction)
    except CompileError:
        return None
    return case


def felix_messages(case: Case) -> list[felix.ToDataplane]:
    """The case's objects (without its InSync) and pod-b."""
    return [m for m in case.messages if not m.HasField("in_sync")] + pod_b_messages()


def probes_for(rng: random.Random, case: Case, n: int, netns_of: dict[str, str], peer: str) -> list[Probe]:
    """`n` distinct packets the case's generator draws (biased to rule edges), sendable by real
    sockets; about one in four has pod-b as the other end, the rest the peer."""
    out: dict[tuple[object, ...], Probe] = {}
    for _ in range(40):
        for pkt in random_packets(rng, case, n):
            if pkt.proto not in SENDABLE or (pkt.has_ports and 0 in (pkt.src_port, pkt.dst_port)):
                continue
            if rng.random() < 0.25:
                pod_b = ipaddress.ip_address((PODS if case.family == 4 else PODS6)[POD_B])
                pkt = dataclasses.replace(pkt, **({"src": pod_b} if case.direction == "ingress" else {"dst": pod_b}))
            if pkt.src == pkt.dst:
                continue
            probe = Probe(pkt, netns_of.get(str(pkt.src), peer), netns_of.get(str(pkt.dst), peer))
            out.setdefault(probe.key, probe)
            if len(out) == n:
                return list(out.values())
    return list(out.values())


def expected(state: DataplaneState, pkt: Packet) -> bool:
    """Felix's verdict for the flow: the sender's egress and the receiver's ingress, for every
    endpoint at either end (the peer is no endpoint)."""
    allowed = True
    for key, pod in ((ENDPOINT, POD_A), (POD_B_KEY, POD_B)):
        addresses = {PODS[pod], PODS6[pod]}
        if str(pkt.src) in addresses:
            allowed &= verdict(state, key, "egress", pkt).allowed
        if str(pkt.dst) in addresses:
            allowed &= verdict(state, key, "ingress", pkt).allowed
    return allowed


# -- a fixed state, for the established-flow and fault tests ---------------------------------------
CLIENTS, CLIENTS6 = "10.65.1.0/28", "fd65:1::/124"  # peer addresses the web policy admits


def web_objects(admit_web: bool = True) -> list[felix.ToDataplane]:
    """pod-a behind policy "web": TCP 8080 from CLIENTS and CLIENTS6 (or, with `admit_web` False,
    denied: the same policy changed in place), ping from anyone; everything out. pod-b open."""
    web = b.policy("web", namespace="default", inbound=[
        b.rule("allow" if admit_web else "deny", protocol="tcp", dst_ports=[8080], src_net=[CLIENTS]),
        b.rule("allow" if admit_web else "deny", protocol="tcp", dst_ports=[8080], src_net=[CLIENTS6]),
        b.rule("allow", protocol="icmp", icmp_type=8),
        b.rule("allow", protocol="icmpv6", icmp_type=128),
    ], outbound=[b.rule("allow")])
    tiers = [b.tier("app", ingress=["web"], egress=["web"], namespace="default")]
    return [web, b.workload(POD_A, "calipoda", ipv4=[f"{PODS[POD_A]}/32"], ipv6=[f"{PODS6[POD_A]}/128"],
                            tiers=tiers), *pod_b_messages()]


def web_probes(netns_of: dict[str, str], peer: str) -> list[Probe]:
    """Flows both ways, some admitted by web_objects() and some not, and the replies they need."""
    a, bb, a6, b6 = PODS[POD_A], PODS[POD_B], PODS6[POD_A], PODS6[POD_B]
    packets = [
        Packet(6, ipaddress.ip_address("10.65.1.5"), ipaddress.ip_address(a), 40100, 8080),
        Packet(6, ipaddress.ip_address("10.65.1.5"), ipaddress.ip_address(a), 40101, 22),
        Packet(6, ipaddress.ip_address("10.65.1.20"), ipaddress.ip_address(a), 40102, 8080),
        Packet(17, ipaddress.ip_address("10.65.1.5"), ipaddress.ip_address(a), 40103, 53),
        Packet(6, ipaddress.ip_address(bb), ipaddress.ip_address(a), 40104, 8080),
        Packet(1, ipaddress.ip_address(bb), ipaddress.ip_address(a), icmp_type=8),
        Packet(1, ipaddress.ip_address("10.65.1.6"), ipaddress.ip_address(a), icmp_type=8),
        Packet(6, ipaddress.ip_address(a), ipaddress.ip_address("10.65.1.7"), 40105, 443),
        Packet(17, ipaddress.ip_address(a), ipaddress.ip_address(bb), 40106, 53),
        Packet(6, ipaddress.ip_address("fd65:1::5"), ipaddress.ip_address(a6), 40107, 8080),
        Packet(6, ipaddress.ip_address("fd65:1::5"), ipaddress.ip_address(a6), 40108, 22),
        Packet(58, ipaddress.ip_address(b6), ipaddress.ip_address(a6), icmp_type=128),
        Packet(6, ipaddress.ip_address(a6), ipaddress.ip_address("fd65:1::7"), 40109, 443),
    ]
    return [Probe(p, netns_of.get(str(p.src), peer), netns_of.get(str(p.dst), peer)) for p in packets]
