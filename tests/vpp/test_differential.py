"""The policy core's randomized differential, through the real driver and the emulator.

For each random Felix state (vppagent.policy.generate: tiers, pass, negations, IP sets, named
ports, ICMP, profiles, staged policies), the driver programs the emulator — by apply (a diff from
the previous case) or by resync — and every random packet's first-packet verdict at the pod's
interface must equal the reference evaluator's. Every few cases a resync must find nothing to
write: what the driver believes it programmed is what VPP holds.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterator

import pytest

from tests.vpp.helpers import Target, first_packet_allowed, make_driver
from vppagent.drivers.vpp.classifier import gate
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import ENDPOINT, LOCAL, REMOTE, Case, random_case, random_packets
from vppagent.policy.packet import Packet
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState


def gated_case(rng: random.Random) -> Case:
    """A random case (ingress) plus a policy in a random tier that allows TCP/UDP service ports
    from a set used nowhere else: the shape the classifier takes (gate.py)."""
    case = random_case(rng, direction="ingress")
    family = case.family
    local, remote = (LOCAL[family], REMOTE[family])
    hosts = [local[i] for i in range(local.num_addresses)] + [remote[i] for i in range(remote.num_addresses)]
    members = sorted({str(h) for h in rng.sample(hosts, rng.randint(1, 8))})
    if rng.random() < 0.3:
        members.append(str(ipaddress.ip_network(f"{rng.choice(hosts)}/{30 if family == 4 else 126}", strict=False)))
    rules = [felix.Rule(action="allow", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                        src_ip_set_ids=["big"],
                        dst_ports=[felix.PortRange(first=p, last=p + rng.choice((0, 0, 5)))
                                   for p in rng.sample((22, 53, 80, 443, 8080), rng.randint(1, 2))])
             for _ in range(rng.randint(1, 2))]
    extra = [felix.ToDataplane(ipset_update=felix.IPSetUpdate(id="big", type=felix.IPSetUpdate.NET, members=members)),
             felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(
                 id=felix.PolicyID(name="gated", namespace="default"), policy=felix.Policy(inbound_rules=rules)))]
    return with_policies(rng, case, extra, [felix.PolicyID(name="gated", namespace="default")])


def multi_gated_case(rng: random.Random) -> Case:
    """A random case (ingress) plus one to three sets ("g0".."g2", members overlapping) that
    policies in random tiers allow TCP/UDP service ports from, on overlapping ports, with deny
    rules for some of those ports in between (from a prefix, or from one of the sets): several
    gated sets whose regions overlap, where a member of one set must not be admitted where only
    another set's rules allow it."""
    case = random_case(rng, direction="ingress")
    family = case.family
    local, remote = (LOCAL[family], REMOTE[family])
    hosts = [local[i] for i in range(local.num_addresses)] + [remote[i] for i in range(remote.num_addresses)]
    pool = [str(h) for h in rng.sample(hosts, 10)]
    ports = rng.sample((22, 53, 80, 443, 8080), 3)
    extra: list[felix.ToDataplane] = []
    inserted: list[felix.PolicyID] = []
    for k in range(rng.randint(1, 3)):
        members = sorted(set(rng.sample(pool, rng.randint(1, 6))))
        if rng.random() < 0.2:
            members.append(str(ipaddress.ip_network(f"{rng.choice(hosts)}/{30 if family == 4 else 126}", strict=False)))
        extra.append(felix.ToDataplane(ipset_update=felix.IPSetUpdate(id=f"g{k}", type=felix.IPSetUpdate.NET,
                                                                        members=members)))
        for n in range(rng.randint(1, 2)):
            rules = [felix.Rule(action="allow", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                                src_ip_set_ids=[f"g{k}"],
                                dst_ports=[felix.PortRange(first=p, last=p + rng.choice((0, 0, 3)))
                                           for p in rng.sample(ports, rng.randint(1, 2))])]
            if rng.random() < 0.4:  # a deny in the same policy, after or before the set's rule
                first, last = sorted(rng.sample(ports, 2))
                length = rng.choice((24, 30, 32) if family == 4 else (120, 126, 128))
                deny = felix.Rule(action="deny", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                                  dst_ports=[felix.PortRange(first=first, last=rng.choice((first, last)))])
                if rng.random() < 0.5:
                    deny.src_net.append(str(ipaddress.ip_network(f"{rng.choice(hosts)}/{length}", strict=False)))
                else:  # a gated set also denied from: gated in its allow rules only (an alias)
                    deny.src_ip_set_ids.append(f"g{rng.randrange(k + 1)}")
                rules.insert(rng.randint(0, 1), deny)
            pid = felix.PolicyID(name=f"gated{k}.{n}", namespace="default")
            extra.append(felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(
                id=pid, policy=felix.Policy(inbound_rules=rules))))
            inserted.append(pid)
    return with_policies(rng, case, extra, inserted)


def with_policies(rng: random.Random, case: Case, extra: list[felix.ToDataplane],
                  policies: list[felix.PolicyID]) -> Case:
    """The case (ingress) with `extra` sent before its endpoint, and each of `policies` in a random
    tier of the endpoint at a random place."""
    messages = []
    for m in case.messages:
        if m.HasField("workload_endpoint_update"):
            m = felix.ToDataplane().__class__.FromString(m.SerializeToString())
            tiers = m.workload_endpoint_update.endpoint.tiers
            for pid in policies:
                tier = tiers[rng.randrange(len(tiers))]
                tier.ingress_policies.insert(rng.randint(0, len(tier.ingress_policies)), pid)
            messages += extra
        messages.append(m)
    return Case(messages, case.endpoint, "ingress", case.family)


def member_packets(rng: random.Random, case: Case, n: int) -> list[Packet]:
    """Packets from the members of the multi-set cases' sets (g0..g2) to the pod's service
    ports: where one set's admit region must not serve another's members."""
    members = [ipaddress.ip_network(m, strict=False) for s in ("g0", "g1", "g2") if s in case.state.ipsets
               for m in case.state.ipsets[s].members]
    if not members:
        return []
    return [Packet(rng.choice((6, 17)), rng.choice(members).network_address, case.endpoint_address,
                   rng.choice((1000, 40000)), rng.choice((22, 53, 80, 81, 443, 446, 8080))) for _ in range(n)]


def run_differential(target: Target, driver: VppDriver, seeds: range, packets_per_case: int,
                     make_case: Callable[[random.Random], Case] = random_case) -> int:
    pods = {i.tag: i.sw_if_index for i in target.emulator.state.interfaces.all()}
    sw_if_index = pods.get(workload_tag(ENDPOINT)) or target.pod(ENDPOINT.workload_id)
    previous = DataplaneState()
    checked = 0
    for seed in seeds:
        rng = random.Random(seed)
        case = make_case(rng)
        try:  # a state VPP's ACLs cannot express (compile refuses) is not a differential case
            compile_endpoint(case.state, case.endpoint, case.direction)
        except CompileError:
            continue
        if seed % 7 == 0:
            report = driver.resync(case.state)
        else:
            report = driver.apply(diff_states(previous, case.state), case.state)
        assert report.ok and not report.failed, f"seed {seed}: {report}"
        previous = case.state
        for pkt in [*random_packets(rng, case, packets_per_case), *member_packets(rng, case, packets_per_case)]:
            expected = verdict(case.state, case.endpoint, case.direction, pkt)
            actual = first_packet_allowed(target.emulator, sw_if_index, case.direction, pkt)
            assert actual == expected.allowed, (f"seed {seed} {case.direction} {pkt}: VPP "
                                                f"{'allows' if actual else 'drops'}, Felix {expected.describe()}")
        checked += 1
        if seed % 25 == 0:
            assert driver.resync(case.state).writes == 0, f"seed {seed}: VPP drifted from what the driver knows"
    return checked


@pytest.fixture
def gated_driver(sim_target: Target) -> Iterator[VppDriver]:
    """A driver gating every address set of a qualifying ingress list (classifier threshold 1)."""
    driver = make_driver(sim_target, classifier_min_members=1)
    yield driver
    driver.close()


def test_differential_random_policies_through_driver_and_emulator(sim_target: Target, sim_driver: VppDriver) -> None:
    checked = run_differential(sim_target, sim_driver, range(240), packets_per_case=12)
    assert checked >= 200


def test_differential_with_ip_sets_in_the_classifier(sim_target: Target, gated_driver: VppDriver) -> None:
    """Every address set of a qualifying ingress list goes to the classifier (threshold 1)."""
    checked = run_differential(sim_target, gated_driver, range(5000, 5240), packets_per_case=12, make_case=gated_case)
    # (a set whose rules never decide a verdict, e.g. behind a deny-all, is not gated: L_U = L;
    # a resync recompiles only what changed since the last state, so each gated list counts once)
    assert gated_driver.status()["gated_lists"] >= 70, "the classifier path was exercised"
    assert checked >= 200


def test_differential_with_several_sets_in_one_gate(sim_target: Target, gated_driver: VppDriver) -> None:
    """Several gated sets per list, overlapping regions, denies in between (threshold 1)."""
    checked = run_differential(sim_target, gated_driver, range(7000, 7240), packets_per_case=16,
                               make_case=multi_gated_case)
    compiler = gated_driver._compiler
    assert compiler.gated >= 100 and compiler.multi_set_gates >= 60, "several sets per gate were exercised"
    assert checked >= 200


def test_differential_with_admits_worked_out_per_member(sim_target: Target, monkeypatch: pytest.MonkeyPatch,
                                                        gated_driver: VppDriver) -> None:
    """The same, every admit region taken member by member (the path of regions too ragged to hold
    as entries, e.g. cut by denies of single addresses)."""
    monkeypatch.setattr(gate, "MEMBER_WISE", True)
    checked = run_differential(sim_target, gated_driver, range(7500, 7740), packets_per_case=16,
                               make_case=multi_gated_case)
    assert gated_driver._compiler.multi_set_gates >= 60, "several sets per gate were exercised"
    assert checked >= 200


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_differential_long(sim_target: Target, gated_driver: VppDriver) -> None:
    assert run_differential(sim_target, gated_driver, range(1000, 3000), packets_per_case=25) >= 1700
    assert run_differential(sim_target, gated_driver, range(10_000, 11_000), packets_per_case=25,
                            make_case=gated_case) >= 900
    assert run_differential(sim_target, gated_driver, range(20_000, 21_000), packets_per_case=25,
                            make_case=multi_gated_case) >= 900
