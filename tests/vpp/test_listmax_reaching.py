"""Issue 15's "≤ 2,500 rules per list": destination sets that cannot hold the endpoint are emptied
before the gate's analysis (classifier/source.py `reaching`), so that named ports of other pods no
longer keep a gated set's port in the ACL (they made L_0 ragged there: one single destination per
named-port member). The gate then depends on which of those sets hold a member that meets the
endpoint's destinations, and the driver keys its gates by that (acl/lists.py): a pod that is
itself a named-port destination gets another gate (the set stays whole for it, as before).
Checked against the evaluator through the driver and the emulator, with named-port and
destination-set rules that hold the pod or not."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from tests.vpp.helpers import Target, first_packet_allowed, make_driver, state_of, wkey
from tests.vpp.test_differential import multi_gated_case, run_differential, with_policies
from vppagent.drivers.vpp.classifier.gate import gated_lists
from vppagent.drivers.vpp.classifier.source import DestinationIndex, destination_sets, reaching, rules
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import ENDPOINT, LOCAL, REMOTE, Case, random_packets
from vppagent.policy.model import Direction, IPAddress
from vppagent.policy.reach import domain, restrict
from vppagent.state.diff import diff_states
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import DataplaneState, WorkloadKey

OTHERS = [f"10.71.0.{i + 1}" for i in range(40)]  # named-port destinations that are other pods


def test_destination_sets_are_those_no_rule_names_as_a_source() -> None:
    state = state_of([
        b.config({}),
        b.ipset("s", ["10.66.0.1"], kind="ip"),
        b.ipset("d", ["10.65.0.2"], kind="ip"),
        b.ipset("n:web", ["10.65.0.2,tcp:80"], kind="ip_and_port"),
        b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_named_port_ip_set_ids=["n:web"]),
            b.rule("deny", dst_ip_set_ids=["d"]),
            b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"]),
            b.rule("deny", protocol="tcp", dst_ports=[81], dst_ip_set_ids=["s"])]),  # "s" is a source too
        b.workload("ns/web0", "cali0", ipv4=["10.65.0.2/32"], tiers=[b.tier("default", ingress=["web"],
                                                                             namespace="ns")]),
    ])
    catalog = Catalog(state)
    assert destination_sets(rules(catalog, catalog.workload(wkey("ns/web0")), Direction.INGRESS)) == {"d", "n:web"}


def test_the_sets_meeting_the_endpoint_are_found_by_address() -> None:
    state = state_of([
        b.config({}),
        b.ipset("a", ["10.65.0.3", "10.64.0.0/16", "fd65::2"], kind="net"),
        b.ipset("n", ["10.65.0.2,tcp:80", "10.65.0.9,tcp:80"], kind="ip_and_port"),
        b.ipset("none", ["10.70.0.1", "10.65.0.1", "10.65.0.3"], kind="ip"),
        b.ipset("v6", ["fd65::2,tcp:80"], kind="ip_and_port"),
    ])
    index = DestinationIndex(state, ["a", "n", "none", "v6", "missing"])
    endpoint = (ipaddress.ip_network("10.65.0.2/32"), ipaddress.ip_network("224.0.0.0/4"))
    assert index.meeting(endpoint) == ("n",), "the endpoint's address, not its neighbours'"
    assert index.meeting((ipaddress.ip_network("10.64.9.9/32"),)) == ("a",), "inside a prefix member"
    assert index.meeting((ipaddress.ip_network("10.65.0.0/30"),)) == ("a", "n", "none")
    assert index.meeting((ipaddress.ip_network("fd65::2/128"),)) == ("a", "v6")
    assert index.meeting((ipaddress.ip_network("10.66.0.0/16"),)) == ()


def test_a_set_is_emptied_only_when_no_member_can_reach_the_endpoint() -> None:
    state = state_of([b.config({}), b.ipset("d", ["10.65.0.2", "10.70.0.1"], kind="ip"),
                      b.ipset("e", ["10.70.0.2"], kind="ip")])
    endpoint = (ipaddress.ip_network("10.65.0.2/32"),)
    assert reaching(state, ["d"], endpoint) is state, "d holds the endpoint: whole"
    cut = reaching(state, ["d", "e"], endpoint)
    assert cut is not state and set(cut.ipsets["e"].members) == set() and cut.ipsets["d"] is state.ipsets["d"]
    assert set(state.ipsets["e"].members) == {"10.70.0.2"}, "the state itself is not changed"
    state.ipsets["e"] = IPSet("e", IPSetType.IP, frozenset({"10.70.0.1"}), ("not-an-address",))
    assert reaching(state, ["e"], endpoint).ipsets["e"].invalid == ("not-an-address",)


def _named_port_list(with_endpoint: bool) -> tuple[int, int]:
    """A list allowing tcp/8080 from a scattered set, after a named-port rule to 40 other pods on
    tcp/8080 (and the endpoint too when `with_endpoint`): the set's members left in the ACL, and
    its gaps on tcp/8080."""
    members = [f"10.66.{i}.7" for i in range(80)]
    named = [f"{a},tcp:8080" for a in OTHERS] + (["10.65.0.2,tcp:8080"] if with_endpoint else [])
    state = state_of([
        b.config({}),
        b.ipset("s", members, kind="ip"),
        b.ipset("n:http", named, kind="ip_and_port"),
        b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_named_port_ip_set_ids=["n:http"]),
            b.rule("allow", protocol="tcp", dst_ports=[80, 8080], src_ip_set_ids=["s"])]),
        b.workload("ns/web0", "cali0", ipv4=["10.65.0.2/32"], tiers=[b.tier("default", ingress=["web"],
                                                                             namespace="ns")]),
    ])
    catalog = Catalog(state)
    ep = catalog.workload(wkey("ns/web0"))
    gated = gated_lists(catalog, state, ep, Direction.INGRESS, 20_000, 1)
    assert gated is not None
    universe, gate = gated
    written = restrict(universe, ep, Direction.INGRESS)
    in_acl = sum(r.src.prefixlen == 32 and str(r.src.network_address).startswith("10.66.") for r in written.rules)
    return in_acl, sum(e.proto == 6 and e.dport == 8080 for e in gate.gaps)


def test_named_ports_of_other_pods_leave_the_port_to_the_gate() -> None:
    assert _named_port_list(with_endpoint=False) == (0, 1), "tcp/8080 gated: no member in the ACL"
    # a named-port set holding the endpoint stays whole: its 40 other destinations keep tcp/8080
    # ragged and the set's tcp/8080 in the ACL, as it was for every endpoint before (80 members)
    assert _named_port_list(with_endpoint=True) == (80, 0)


def named_port_case(rng: random.Random) -> Case:
    """multi_gated_case plus, in random tiers, an allow to a named-port set on the gated sets'
    ports (40 other pods, and the endpoint half of the time: then it is that named port's
    destination) and a deny to a destination set (holding the endpoint half of the time)."""
    case = multi_gated_case(rng)
    family = case.family
    hosts = [*LOCAL[family], *REMOTE[family]]
    own = str(case.endpoint_address)
    others = [str(h) for h in rng.sample(hosts, 6) if str(h) != own] + \
        ([f"10.71.0.{i + 1}" for i in range(40)] if family == 4 else [f"fd71::{i + 1:x}" for i in range(40)])
    port = rng.choice((22, 53, 80, 443, 8080))
    proto = rng.choice(("tcp", "udp"))
    named = [f"{a},{proto}:{port}" for a in others] + ([f"{own},{proto}:{port}"] if rng.random() < 0.5 else [])
    targets = others[:3] + ([own] if rng.random() < 0.5 else [])
    extra = [
        felix.ToDataplane(ipset_update=felix.IPSetUpdate(id="n:named", type=felix.IPSetUpdate.IP_AND_PORT,
                                                         members=named)),
        felix.ToDataplane(ipset_update=felix.IPSetUpdate(id="d:targets", type=felix.IPSetUpdate.IP, members=targets)),
        felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(
            id=felix.PolicyID(name="named", namespace="default"), policy=felix.Policy(inbound_rules=[
                felix.Rule(action="allow", protocol=felix.Protocol(name=proto), dst_named_port_ip_set_ids=["n:named"]),
                felix.Rule(action="deny", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                           dst_ports=[felix.PortRange(first=port, last=port)], dst_ip_set_ids=["d:targets"])]))),
    ]
    return with_policies(rng, case, extra, [felix.PolicyID(name="named", namespace="default")])


def test_differential_with_named_ports_that_hold_the_endpoint_or_not(sim_target: Target) -> None:
    """Through the driver and the emulator (threshold 1): every verdict the evaluator's, while
    the named-port set and the destination set hold the endpoint in some cases and not in others
    (the driver's gate for the list changes with them)."""
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        checked = run_differential(sim_target, driver, range(9000, 9200), packets_per_case=16,
                                   make_case=named_port_case)
        assert driver._compiler.gated >= 60, "the classifier path was exercised"
        assert checked >= 150
    finally:
        driver.close()


def test_the_cut_changes_no_verdict_for_packets_that_reach_the_endpoint() -> None:
    """The cut state's list against the whole state's, for the evaluator, on packets to the endpoint."""
    differing = cut_cases = checked = 0
    for seed in range(300):
        rng = random.Random(seed)
        case = named_port_case(rng)
        catalog = Catalog(case.state)
        ep = catalog.workload(case.endpoint)
        cut = reaching(case.state, destination_sets(rules(catalog, ep, Direction.INGRESS)),
                       domain(ep, Direction.INGRESS).prefixes)
        cut_cases += cut is not case.state
        reaching_packets = [p for p in random_packets(rng, case, 20) if domain(ep, Direction.INGRESS).contains(p)]
        checked += len(reaching_packets)
        for pkt in reaching_packets:
            differing += verdict(case.state, case.endpoint, "ingress", pkt).allowed != \
                verdict(cut, case.endpoint, "ingress", pkt).allowed
    assert cut_cases >= 250, "destination sets were cut"
    assert checked >= 3000 and differing == 0


TWIN = WorkloadKey("k8s", "default/pod-b", "eth0")


def twin_case(rng: random.Random) -> tuple[Case, IPAddress, bool]:
    """named_port_case with a second endpoint of the same tiers and profiles (pod-b, the next
    address), so that both share one list spec: the named-port set holds exactly one of them
    (the driver must not give both the gate worked out for the other). Returns the case, the
    twin's address and whether the endpoint (not the twin) is the named-port destination."""
    case = named_port_case(rng)
    own, twin = case.endpoint_address, case.endpoint_address + 1
    endpoint_named = rng.random() < 0.5
    messages = []
    for m in case.messages:
        if m.HasField("ipset_update") and m.ipset_update.id == "n:named":
            m = felix.ToDataplane().__class__.FromString(m.SerializeToString())
            members = [x for x in m.ipset_update.members if x.split(",")[0] not in (str(own), str(twin))]
            suffix = members[0].split(",")[1]
            members.append(f"{own if endpoint_named else twin},{suffix}")
            del m.ipset_update.members[:]
            m.ipset_update.members.extend(members)
        messages.append(m)
        if m.HasField("workload_endpoint_update"):
            copy = felix.ToDataplane().__class__.FromString(m.SerializeToString())
            update = copy.workload_endpoint_update
            update.id.workload_id = TWIN.workload_id
            update.endpoint.name = "cali-twin"
            nets = update.endpoint.ipv4_nets if case.family == 4 else update.endpoint.ipv6_nets
            del nets[:]
            nets.append(str(ipaddress.ip_network(twin)))
            messages.append(copy)
    return Case(messages, case.endpoint, "ingress", case.family), twin, endpoint_named


def test_differential_two_endpoints_of_one_spec_one_a_named_destination(sim_target: Target) -> None:
    """Both endpoints' verdicts the evaluator's, through the driver and the emulator."""
    driver = make_driver(sim_target, classifier_min_members=1)
    pods = {ENDPOINT: sim_target.pod(ENDPOINT.workload_id), TWIN: sim_target.pod(TWIN.workload_id)}
    try:
        previous = DataplaneState()
        checked = 0
        for seed in range(9500, 9620):
            rng = random.Random(seed)
            case, twin, _ = twin_case(rng)
            try:
                compile_endpoint(case.state, case.endpoint, "ingress")
            except CompileError:
                continue
            report = driver.apply(diff_states(previous, case.state), case.state)
            assert report.ok and not report.failed, f"seed {seed}: {report}"
            previous = case.state
            for pkt in random_packets(rng, case, 16):
                for key, dst in ((ENDPOINT, pkt.dst), (TWIN, twin)):
                    sent = dataclasses.replace(pkt, dst=dst)
                    expected = verdict(case.state, key, "ingress", sent).allowed
                    actual = first_packet_allowed(sim_target.emulator, pods[key], "ingress", sent)
                    assert actual == expected, f"seed {seed} {key.workload_id} {sent}"
            checked += 1
        assert checked >= 90 and driver._compiler.gated >= 60
    finally:
        driver.close()
