"""Review of the classifier gate's compile (gatefast2, listmax) against the evaluator.

Through the driver (every qualifying set gated: threshold 1) and the emulator, each packet's
first-packet verdict at the pod's interface (L_U in the ACL AND the gate's chain) must be the
evaluator's. The random states (review8_cases.py) have two endpoints of one list spec, named-port
and destination sets (plain and negated) holding either, both or neither, Pass rules, port
ranges, ICMP, IPv6, and steps that move the endpoints in and out of the destination sets (by
the sets' members, or pod-b readdressed), one driver (and its compile caches) for every world.

The hole found: an allow rule from a gated set with a negated destination (not_dst_ip_set_ids or
not_dst_net) compiles to marked *deny* rules in the analysis list A (the negation's exceptions),
and `marked._universe` turns every marked rule into one matching any source port, assuming
marked rules are allows: the widened deny comes first, and the other gated set's marked allow
with the same prefixes, protocol and ports is then dropped as a "repeat" (the key ignores the
action). L_U < L: a member of the other set is dropped by the ACL while the chain admits it.
(Older than today's commits: L_U read off the marked list came with 1637409; the same L_U at
50d3622.) Fixed: a marked deny makes `universe_of` answer None, and L_U is compiled.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vpp.helpers import Target, first_packet_allowed, make_driver, state_of, wkey
from tests.vpp.review8_cases import POD_A, POD_B
from tests.vpp.review8_run import check
from vppagent.drivers.vpp.classifier.gate import list_and_gate
from vppagent.drivers.vpp.classifier.source import with_members
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState

ENDPOINT = wkey("default/pod-a")
MEMBER = ipaddress.ip_address("10.66.0.11")  # of g1
POD = ipaddress.ip_address("10.65.0.2")


def _negated_state(negated: dict[str, list[str]]) -> DataplaneState:
    """Tier t0 passes udp/8080 to the pod (it is in set d); tier t1 allows udp/8080 from g0 to
    destinations not matching `negated`, then udp/8080 from g1. A member of g1 is allowed."""
    return state_of([
        b.config({}),
        b.ipset("g0", ["10.66.0.1"]),
        b.ipset("g1", [str(MEMBER)]),
        b.ipset("d", [str(POD)], kind="ip"),
        b.policy("p0", namespace="default", inbound=[
            b.rule("pass", protocol="udp", dst_ports=[8080], dst_ip_set_ids=["d"])]),
        b.policy("p1", namespace="default", inbound=[
            b.rule("allow", protocol="udp", dst_ports=[8080], src_ip_set_ids=["g0"], **negated),
            b.rule("allow", protocol="udp", dst_ports=[8080], src_ip_set_ids=["g1"])]),
        b.workload(ENDPOINT.workload_id, "cali-a", ipv4=[f"{POD}/32"],
                   tiers=[b.tier("t0", ingress=["p0"], namespace="default"),
                          b.tier("t1", ingress=["p1"], namespace="default")]),
    ])


@pytest.mark.parametrize("negated", [{"not_dst_ip_set_ids": ["d"]}, {"not_dst_net": [f"{POD}/32"]}],
                         ids=["not-dst-set", "not-dst-net"])
def test_a_gated_allow_with_a_negated_destination_leaves_the_other_sets_allow(
        sim_target: Target, negated: dict[str, list[str]]) -> None:
    state = _negated_state(negated)
    pkt = Packet(17, MEMBER, POD, 40000, 8080)
    expected = verdict(state, ENDPOINT, "ingress", pkt)
    assert expected.allowed, "the case is what it says"
    catalog = Catalog(state)
    ep = catalog.workload(ENDPOINT)
    universe, gate = list_and_gate(catalog, ep, Direction.INGRESS, 20_000, 1)
    every = with_members(state, {"g0": ("0.0.0.0/0",), "g1": ("0.0.0.0/0",)})
    compiled = compile_endpoint(Catalog(every), Catalog(every).workload(ENDPOINT), Direction.INGRESS)
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        pod = sim_target.pod(ENDPOINT.workload_id)
        report = driver.apply(diff_states(DataplaneState(), state), state)
        assert report.ok and not report.failed, str(report)
        actual = first_packet_allowed(sim_target.emulator, pod, "ingress", pkt)
    finally:
        driver.close()
    assert actual == expected.allowed, (
        f"endpoint {ENDPOINT.workload_id} ({POD}), packet {pkt}: VPP {'allows' if actual else 'drops'}, "
        f"evaluator {expected.describe()}; gate {gate}; L_U from the analysis "
        f"{[str(r) for r in universe.rules]}, L_U compiled {[str(r) for r in compiled.rules]}")


def test_two_endpoints_of_one_spec_moving_through_destination_sets(sim_target: Target) -> None:
    """Random worlds (hypothesis draws the seed), the negated shape above among them, one driver for
    all: both endpoints' verdicts are the evaluator's at every step, the list key following the
    sets they are in and pod-b's address."""
    driver = make_driver(sim_target, classifier_min_members=1)
    pods = {k: sim_target.pod(k.workload_id) for k in (POD_A, POD_B)}
    last: list[DataplaneState | None] = [None]
    checked = [0]

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def run(seed: int) -> None:
        wrong, last[0], states = check(sim_target, driver, pods, seed, previous=last[0], negated_gated=True)
        checked[0] += states
        assert not wrong, "\n".join(wrong[:5])

    try:
        run()
        assert checked[0] >= 300, checked
        compiler = driver._compiler
        assert compiler.gated >= 100 and compiler.multi_set_gates >= 20, "the gate was exercised"
    finally:
        driver.close()
