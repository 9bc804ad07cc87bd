"""When a set goes to the classifier (classifier/source.pays): at or above the threshold
always; below it when the sets below it, cheapest first, take out of the list at least as many
ACL rules as they add admit sessions (one per block of members: classifier/aggregate.py) and
enough to be worth a chain: scattered members and runs of members on single ports go, a set on a
port range stays, and so does a list whose smaller sets are too few to be worth a chain."""

from __future__ import annotations

import ipaddress

from tests.vpp.helpers import state_of, wkey
from vppagent.drivers.vpp.classifier.admits import members as members_of
from vppagent.drivers.vpp.classifier.admits import set_sessions
from vppagent.drivers.vpp.classifier.gate import gated_lists
from vppagent.drivers.vpp.classifier.source import WORTH_A_GATE, paying, pays
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.flat import first_match
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet

SCATTERED = [f"10.66.{i}.7" for i in range(80)]  # no two aggregate: 80 prefixes
CONTIGUOUS = [f"10.67.0.{i}" for i in range(1, 81)]  # a few prefixes: .1/32 .2/31 .4/30 ... .80/32
RUN = [f"10.69.0.{i}" for i in range(100)]  # .0/26 .64/27 .96/30: three prefixes


def gate_of(members: list[str], ports: list[object], threshold: int,
            others: tuple[object, ...] = (), sessions: dict[str, int] | None = None) -> tuple[str, ...]:
    """The gated sets of a list allowing tcp `ports` from set s (and `others`: rules from sets o
    and r); with `sessions`, each gated set's admit sessions are put there."""
    state = state_of([
        b.config({}),
        b.ipset("s", members, kind="ip"),
        b.ipset("o", ["10.68.0.1", "10.68.3.3"], kind="ip"),
        b.ipset("r", RUN, kind="ip"),
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
    if sessions is not None:
        sessions.update({g.set_id: len(set_sessions(g, 4, members_of(state, g.set_id, 4))) for g in gate.sets})
    return gate.set_ids


def test_scattered_members_on_single_ports_go_below_the_threshold() -> None:
    assert gate_of(SCATTERED, [80], 500) == ("s",)
    assert gate_of(SCATTERED, [80, 443], 500) == ("s",)


def test_members_that_aggregate_cost_a_session_per_prefix() -> None:
    """A run of members is admitted by blocks (/25 to /32), as many as the compiler's prefixes:
    80 members from .1 are 8 prefixes; alone on one port that is too few rules to be worth a chain
    (the threshold takes it), and with the scattered set, which pays, it goes too."""
    collapsed = list(ipaddress.collapse_addresses(ipaddress.ip_network(m) for m in CONTIGUOUS))
    assert len(collapsed) == 8
    assert gate_of(CONTIGUOUS, [80], 500) == ()
    found: dict[str, int] = {}
    assert gate_of(CONTIGUOUS, [80, 443], 80, sessions=found) == ("s",)
    assert found == {"s": 8}, "a session per prefix on the source alone (its P_i is all the gaps), not 80"
    run = b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["r"])
    found.clear()
    assert gate_of(SCATTERED, [80], 500, (run,), sessions=found) == ("r", "s")
    assert found == {"r": 3, "s": 80}


def test_a_run_left_in_the_acl_kept_the_others_from_its_ports() -> None:
    """Without blocks the run's 100 sessions against its 3 rules kept it in the ACL, and with it
    the scattered set from port 80 (its ports are ragged for every other set): what the bench's
    contiguous sets did at 25 policies. The arithmetic of that choice, and of the one now:"""
    assert paying({"s": (80, 80), "r": (3, 100)}) == {"s": 80}
    assert paying({"s": (80, 80), "r": (3, 3)}) == {"s": 80, "r": 3}


def test_a_port_range_costs_more_sessions_than_rules() -> None:
    """8000-8099 is one ACL rule per prefix but three port blocks per member."""
    assert gate_of(SCATTERED, [(8000, 8099)], 500) == ()


def test_a_small_saving_is_not_worth_a_chain() -> None:
    few = SCATTERED[:WORTH_A_GATE - 1]
    assert gate_of(few, [80], 500) == ()
    assert gate_of(SCATTERED[:WORTH_A_GATE], [80], 500) == ("s",)
    assert pays(WORTH_A_GATE, WORTH_A_GATE) and not pays(WORTH_A_GATE, WORTH_A_GATE + 1)
    assert not pays(WORTH_A_GATE - 1, 1)


def test_the_smaller_sets_go_cheapest_first_while_they_pay_together() -> None:
    """Sorted by sessions per rule; each joins while the running totals still pay; a set that
    would tip them over stays, and so does every dearer one; too few rules in all: none."""
    assert paying({"a": (100, 50), "b": (10, 40), "c": (10, 30)}) == {"a": 100, "c": 10, "b": 10}
    assert paying({"a": (100, 90), "b": (10, 40), "c": (10, 15)}) == {"a": 100, "c": 10}
    assert paying({"a": (30, 20), "b": (30, 20)}) == {}  # 60 rules: not worth a chain
    assert paying({"a": (64, 64)}) == {"a": 64}


def test_a_set_left_in_the_acl_keeps_its_own_ports_only() -> None:
    """Set o stays in the ACL (on a port range too: 4 rules, 8 sessions, more than s's tie can
    pay for): where it is allowed the drop region would be ragged, so s goes in on the other
    ports only; an ICMP rule from o touches no port."""
    icmp = b.rule("allow", protocol="icmp", src_ip_set_ids=["o"])
    assert gate_of(SCATTERED, [80], 500, (icmp,)) == ("s",)
    on_80 = b.rule("allow", protocol="tcp", dst_ports=[80, (8000, 8099)], src_ip_set_ids=["o"])
    assert gate_of(SCATTERED, [80], 500, (on_80,)) == ()
    assert gate_of(SCATTERED, [80, 443], 500, (on_80,)) == ("s",)
