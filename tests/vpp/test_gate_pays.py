"""When a set goes to the classifier (classifier/source.pays): at or above the threshold
always; below it when the ACL rules it takes out of the list are at least the admit sessions it
adds and worth a chain: scattered members on single ports go, members that aggregate into a
few prefixes stay, and so does a set whose rules are too few to be worth a chain."""

from __future__ import annotations

from tests.vpp.helpers import state_of, wkey
from vppagent.drivers.vpp.classifier.gate import gated_lists
from vppagent.drivers.vpp.classifier.source import WORTH_A_GATE, pays
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.flat import first_match
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet

SCATTERED = [f"10.66.{i}.7" for i in range(80)]  # no two aggregate: 80 prefixes
CONTIGUOUS = [f"10.67.0.{i}" for i in range(1, 81)]  # a few prefixes


def gate_of(members: list[str], ports: list[object], threshold: int,
            others: tuple[object, ...] = ()) -> tuple[str, ...]:
    """The gated sets of a list allowing tcp `ports` from set s (and `others`: rules from set o)."""
    state = state_of([
        b.config({}),
        b.ipset("s", members, kind="ip"),
        b.ipset("o", ["10.68.0.1", "10.68.3.3"], kind="ip"),
        b.policy("web", namespace="ns", inbound=[b.rule("allow", protocol="tcp", dst_ports=ports,
                                                        src_ip_set_ids=["s"]), *others]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/web0", "cali0", ipv4=["10.65.0.2/32"], tiers=[b.tier("default", ingress=["web"],
                                                                             namespace="ns")], profiles=["open"]),
    ])
    catalog = Catalog(state)
    gated = gated_lists(catalog, state, catalog.workload(wkey("ns/web0")), Direction.INGRESS, 20_000, threshold)
    if gated is None:
        return ()
    universe, gate = gated
    # L_U lets a gated port through for anyone: the gate decides (its sets' members are admitted)
    assert any(first_match(universe, Packet.parse(f"tcp 10.99.0.1:40000 > 10.65.0.2:{port}")).allowed
               for port in (80, 443, 8000))
    return gate.set_ids


def test_scattered_members_on_single_ports_go_below_the_threshold() -> None:
    assert gate_of(SCATTERED, [80], 500) == ("s",)
    assert gate_of(SCATTERED, [80, 443], 500) == ("s",)


def test_members_that_aggregate_stay_below_the_threshold_and_go_above_it() -> None:
    assert gate_of(CONTIGUOUS, [80], 500) == ()
    assert gate_of(CONTIGUOUS, [80], 80) == ("s",)


def test_a_port_range_costs_more_sessions_than_rules() -> None:
    """8000-8099 is one ACL rule per prefix but three port blocks per member."""
    assert gate_of(SCATTERED, [(8000, 8099)], 500) == ()


def test_a_small_saving_is_not_worth_a_chain() -> None:
    few = SCATTERED[:WORTH_A_GATE - 1]
    assert gate_of(few, [80], 500) == ()
    assert gate_of(SCATTERED[:WORTH_A_GATE], [80], 500) == ("s",)
    assert pays(WORTH_A_GATE, WORTH_A_GATE) and not pays(WORTH_A_GATE, WORTH_A_GATE + 1)


def test_a_set_left_in_the_acl_keeps_its_own_ports_only() -> None:
    """Set o stays in the ACL (too small to pay): where it is allowed the drop region would be
    ragged, so s goes in on the other ports only; an ICMP rule from o touches no port."""
    icmp = b.rule("allow", protocol="icmp", src_ip_set_ids=["o"])
    assert gate_of(SCATTERED, [80], 500, (icmp,)) == ("s",)
    on_80 = b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["o"])
    assert gate_of(SCATTERED, [80], 500, (on_80,)) == ()
    assert gate_of(SCATTERED, [80, 443], 500, (on_80,)) == ("s",)
