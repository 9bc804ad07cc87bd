"""policy/reach.py: a list restricted to what can reach it keeps every reachable packet's verdict.

The property: for random states (policy/generate.py, as test_property.py), random endpoint
addresses (own, set members, allowed spoofed prefixes; both families) and packets whose
endpoint-side address is drawn inside the domain, first_match(restrict(L)) == verdict. Every
dropped rule must also be disjoint from the domain (checked against ipaddress's own overlap test).
A wrong domain (the wrong side, or the endpoint's own addresses missing) must break the property:
the packets are able to tell.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings

from tests.policy.helpers import ALLOW_ALL, EP, build_state, tcp, tier
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.generate import Case, case_from_seed, random_case, random_packets, seeds
from vppagent.policy.model import IPAddress, IPNetwork, PortRange, WorkloadEndpoint
from vppagent.policy.packet import Packet
from vppagent.policy.reach import (
    Domain,
    ReachIndex,
    domain,
    egress_sources,
    ingress_destinations,
    reaches,
    restrict,
    restrict_to,
)
from vppagent.state.model import DataplaneState


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)


def _pool(rng: random.Random, case: Case) -> list[IPAddress]:
    """Addresses the state mentions (CIDR edges, set members) and the endpoint's: the boundary
    packets of the case's family, plus those of the other family."""
    out: set[IPAddress] = set()
    for family in (4, 6):
        probe = Case(case.messages, case.endpoint, case.direction, family)
        for pkt in random_packets(rng, probe, 30):
            out.update((pkt.src, pkt.dst))
    return sorted(out, key=lambda a: (a.version, int(a)))


def _endpoint(rng: random.Random, ep: WorkloadEndpoint, pool: list[IPAddress]) -> WorkloadEndpoint:
    """`ep` with random addresses: zero to two per family from the pool (so sometimes a member
    of the sets the rules use), and zero to two allowed spoofed prefixes."""
    def hosts(family: int) -> tuple[IPNetwork, ...]:
        of_family = [a for a in pool if a.version == family]
        return tuple(_net(str(a)) for a in rng.sample(of_family, min(rng.randint(0, 2), len(of_family))))

    spoofed = tuple(_net(f"{a}/{rng.choice((24, 28, 30, 32) if a.version == 4 else (64, 120, 124, 128))}")
                    for a in rng.sample(pool, min(rng.choice((0, 0, 1, 2)), len(pool))))
    return dataclasses.replace(ep, ipv4_nets=hosts(4), ipv6_nets=hosts(6), allowed_spoofed_sources=spoofed)


def _inside(rng: random.Random, dom: Domain, family: int, pool: list[IPAddress]) -> IPAddress | None:
    """An address of the domain: a pool address inside it, or a prefix's edge or interior."""
    nets = [n for n in dom.prefixes if n.version == family]
    if not nets:
        return None
    inside = [a for a in pool if a.version == family and any(a in n for n in nets)]
    if inside and rng.random() < 0.6:
        return rng.choice(inside)
    net = rng.choice(nets)
    return net[rng.choice((0, -1, rng.randrange(net.num_addresses)))]


def _reachable_packets(rng: random.Random, case: Case, dom: Domain, pool: list[IPAddress],
                       n: int) -> list[Packet]:
    """The case's boundary packets with their endpoint side moved inside `dom` (the other side,
    ports and protocols as generated)."""
    out: list[Packet] = []
    for pkt in random_packets(rng, case, n):
        addr = _inside(rng, dom, pkt.family, pool)
        if addr is None:
            continue  # nothing of this family reaches the list
        out.append(dataclasses.replace(pkt, src=addr) if dom.side == "src" else dataclasses.replace(pkt, dst=addr))
    return out


def _disagreements(case: Case, compiled: CompiledList, restricted: CompiledList, packets: list[Packet]) -> list[str]:
    cat = Catalog(case.state)
    out = []
    for pkt in packets:
        v = verdict(cat, case.endpoint, case.direction, pkt)
        fm = first_match(restricted, pkt)
        if v.action != fm.action:
            out.append(f"{case.direction} {pkt}: evaluator {v.describe()}, restricted list {fm.action} "
                       f"(unrestricted {first_match(compiled, pkt).action})")
    return out


def _draw(seed: int) -> tuple[Case, WorkloadEndpoint, CompiledList, list[IPAddress], random.Random]:
    case, _ = case_from_seed(seed, 0)
    rng = random.Random(seed ^ 0x5EAC)
    cat = Catalog(case.state)
    pool = _pool(rng, case)
    ep = _endpoint(rng, cat.workload(case.endpoint), pool)
    return case, ep, compile_endpoint(cat, case.endpoint, case.direction), pool, rng


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seeds())
def test_restricted_list_agrees_with_evaluator_on_reachable_packets(seed: int) -> None:
    case, ep, compiled, pool, rng = _draw(seed)
    dom = domain(ep, case.direction)
    restricted = restrict(compiled, ep, case.direction)
    packets = _reachable_packets(rng, case, dom, pool, 16)
    assert all(reaches(ep, case.direction, p) for p in packets)
    assert _disagreements(case, compiled, restricted, packets) == [], f"seed {seed}"
    # Drop-only, and exactly the rules disjoint from the domain.
    kept = [r for r in compiled.rules if any(
        (r.src if dom.side == "src" else r.dst).overlaps(n) for n in dom.prefixes if n.version == r.family)]
    assert restricted.rules == tuple(kept), f"seed {seed}"
    assert restricted.default_action == compiled.default_action


def test_the_property_is_not_vacuous() -> None:
    """Restriction drops rules in most cases, and the reachable packets meet both verdicts
    through kept rules (not only the default)."""
    dropped = matched = total = 0
    actions: set[str] = set()
    for seed in range(150):
        case, ep, compiled, pool, rng = _draw(seed)
        restricted = restrict(compiled, ep, case.direction)
        dropped += len(restricted.rules) < len(compiled.rules)
        for pkt in _reachable_packets(rng, case, domain(ep, case.direction), pool, 8):
            fm = first_match(restricted, pkt)
            if fm.index is not None:
                matched += 1
                actions.add(fm.action)
            total += 1
    assert dropped > 75, dropped
    assert matched > total // 5 and actions == {"allow", "deny"}, (matched, total, actions)


@pytest.mark.parametrize("mutation", ["wrong side", "own addresses missing"])
def test_a_wrong_domain_breaks_the_property(mutation: str) -> None:
    """The check can fail: the same packets catch a domain on the wrong side (egress restricted
    by destination, ingress by source) and one without the endpoint's own addresses."""
    caught = 0
    for seed in range(300):
        case, ep, compiled, pool, rng = _draw(seed)
        right = domain(ep, case.direction)
        if mutation == "wrong side":
            wrong = Domain("dst" if right.side == "src" else "src", right.prefixes)
        else:
            own = {*ep.ipv4_nets, *ep.ipv6_nets}
            wrong = Domain(right.side, tuple(n for n in right.prefixes if not any(n.overlaps(o) for o in own)))
        packets = _reachable_packets(rng, case, right, pool, 16)
        caught += bool(_disagreements(case, compiled, restrict_to(compiled, wrong), packets))
    assert caught >= 10, caught


def test_an_index_reused_for_many_domains_answers_each_like_a_fresh_one() -> None:
    """ReachIndex (one per shared list, state kept between questions) gives each endpoint what
    a restriction of its own gives it."""
    rng = random.Random(3)
    for _ in range(60):
        case = random_case(rng)
        cat = Catalog(case.state)
        compiled = compile_endpoint(cat, case.endpoint, case.direction)
        pool = _pool(rng, case)
        index = ReachIndex(compiled.rules, domain(cat.workload(case.endpoint), case.direction).side)
        for _ in range(5):
            ep = _endpoint(rng, cat.workload(case.endpoint), pool)
            kept = index.kept(domain(ep, case.direction))
            assert tuple(compiled.rules[i] for i in kept) == restrict(compiled, ep, case.direction).rules


# -- unit cases -----------------------------------------------------------------------------------

POD = "10.65.0.2"
OTHERS = ["10.65.1.1/32", "10.65.1.2/32"]


def _ep(state: DataplaneState, ipv4_nets: tuple[str, ...] = (POD + "/32",),
        ipv6_nets: tuple[str, ...] = ("fd65::2/128",),
        allowed_spoofed_sources: tuple[str, ...] = ()) -> WorkloadEndpoint:
    """The helpers' endpoint with these addresses (its lists do not depend on them)."""
    return dataclasses.replace(Catalog(state).workload(EP), ipv4_nets=tuple(map(_net, ipv4_nets)),
                               ipv6_nets=tuple(map(_net, ipv6_nets)),
                               allowed_spoofed_sources=tuple(map(_net, allowed_spoofed_sources)))


def _named_port_state() -> DataplaneState:
    members = [f"{POD},tcp:8080", "10.65.1.1,tcp:8080", "10.65.1.2,tcp:9090", "fd65::2,tcp:8080",
               "fd65:1::1,tcp:8080"]
    return build_state(ipsets={"n:web": ("IP_AND_PORT", members)},
                       policies={"p": ([{"action": "allow", "protocol": {"name": "tcp"},
                                         "dst_named_port_ip_set_ids": ["n:web"]}], [])},
                       tiers=[tier("t", ingress=["p"])], profiles={"prof": ALLOW_ALL}, profile_ids=["prof"])


def test_named_port_ingress_rule_keeps_only_the_own_entry() -> None:
    state = _named_port_state()
    compiled = compile_endpoint(state, EP, "ingress")
    restricted = restrict(compiled, _ep(state), "ingress")
    allows = [r for r in restricted.rules if r.is_permit]
    assert sorted(str(r.dst) for r in allows) == ["10.65.0.2/32", "fd65::2/128"]
    assert len([r for r in compiled.rules if r.is_permit]) == 5
    own = Packet.parse(f"tcp 10.65.1.1:40000 > {POD}:8080")
    assert first_match(restricted, own).action == first_match(compiled, own).action == "allow"
    # An endpoint that is no member of the set keeps none of its entries (the list still denies).
    outsider = restrict(compiled, _ep(state, ipv4_nets=("10.65.0.9/32",), ipv6_nets=()), "ingress")
    assert not any(r.is_permit for r in outsider.rules) and outsider.default_action == "deny"


def test_egress_allow_from_a_set_of_other_pods_is_dropped() -> None:
    state = build_state(ipsets={"s:pods": ("IP", OTHERS)},
                        policies={"p": ([], [tcp(80, action="allow", src_ip_set_ids=["s:pods"]),
                                             tcp(443, action="allow")])},
                        tiers=[tier("t", egress=["p"])])
    compiled = compile_endpoint(state, EP, "egress")
    restricted = restrict(compiled, _ep(state), "egress")
    assert [r.dstport_or_icmpcode.first for r in restricted.rules if r.is_permit] == [443, 443]  # v4, v6
    assert len(compiled.rules) - len(restricted.rules) == 2
    # A member of the set keeps its own rule, not the other member's.
    member = restrict(compiled, _ep(state, ipv4_nets=("10.65.1.2/32",)), "egress")
    assert [str(r.src) for r in member.rules if r.dstport_or_icmpcode.first == 80] == ["10.65.1.2/32"]


def test_allowed_spoofed_sources_keep_their_rules() -> None:
    state = build_state(policies={"p": ([], [{"action": "allow", "src_net": ["192.168.7.0/24"]},
                                            {"action": "deny", "src_net": ["fd99::/64"]},
                                            tcp(80, action="allow")])},
                        tiers=[tier("t", egress=["p"])])
    compiled = compile_endpoint(state, EP, "egress")

    def sources(ep: WorkloadEndpoint) -> list[str]:  # besides the encapsulation drops (any source)
        return [str(r.src) for r in restrict(compiled, ep, "egress").rules if r.src.prefixlen]

    assert sources(_ep(state)) == []
    assert sources(_ep(state, allowed_spoofed_sources=("192.168.7.128/25", "fd99::5/128"))) == \
        ["192.168.7.0/24", "fd99::/64"]
    # A domain prefix wider than the rule's keeps it too.
    assert sources(_ep(state, allowed_spoofed_sources=("192.168.0.0/16",))) == ["192.168.7.0/24"]


def test_multi_address_and_v6_only_endpoints() -> None:
    state = build_state(policies={"p": ([{"action": "allow", "dst_net": ["10.65.0.2/32", "10.65.0.7/32"]},
                                         {"action": "allow", "dst_net": ["fd65::2/128", "fd65::7/128"]},
                                         {"action": "deny", "dst_net": ["fd65::/64"]},
                                         tcp(80, action="allow")], [])},
                        tiers=[tier("t", ingress=["p"])])
    compiled = compile_endpoint(state, EP, "ingress")
    both = restrict(compiled, _ep(state, ipv4_nets=("10.65.0.2/32", "10.65.0.7/32")), "ingress")
    assert [str(r.dst) for r in both.rules if r.dst.prefixlen] == \
        ["10.65.0.2/32", "10.65.0.7/32", "fd65::2/128", "fd65::/64"]
    v6_only = restrict(compiled, _ep(state, ipv4_nets=(), ipv6_nets=("fd65::7/128",)), "ingress")
    assert [str(r.dst) for r in v6_only.rules if r.dst.prefixlen] == ["fd65::7/128", "fd65::/64"]
    # Egress of a v6-only pod: no IPv4 source can leave it, every IPv4 rule is dead.
    egress = build_state(policies={"p": ([], [tcp(80, action="allow")])}, tiers=[tier("t", egress=["p"])])
    full = compile_endpoint(egress, EP, "egress")
    out = restrict(full, _ep(egress, ipv4_nets=()), "egress")
    assert {r.family for r in full.rules} == {4, 6} and {r.family for r in out.rules} == {6}
    assert len(out.rules) == len([r for r in full.rules if r.family == 6])


def test_domains_state_what_reaches_a_pod() -> None:
    state = build_state(tiers=[])
    ep = _ep(state, allowed_spoofed_sources=("192.168.7.0/24",))
    assert [str(n) for n in egress_sources(ep)] == ["10.65.0.2/32", "192.168.7.0/24", "fd65::2/128", "fe80::/10"]
    assert [str(n) for n in ingress_destinations(ep)] == [
        "10.65.0.2/32", "224.0.0.0/4", "255.255.255.255/32", "fd65::2/128", "fe80::/10", "ff00::/8"]
    assert reaches(ep, "egress", Packet.parse("udp 192.168.7.9:1 > 8.8.8.8:53"))
    assert not reaches(ep, "egress", Packet.parse("udp 10.65.0.3:1 > 8.8.8.8:53"))
    assert reaches(ep, "ingress", Packet.parse("udp 8.8.8.8:53 > 10.65.0.2:1"))
    assert not reaches(ep, "ingress", Packet.parse("udp 10.65.0.2:1 > 8.8.8.8:53"))
    assert reaches(ep, "ingress", Packet.parse("icmpv6 fe80::1 > ff02::1:ff00:2 type 135"))


def test_nothing_dead_gives_the_same_list() -> None:
    """Drop-only: a list with nothing dead comes back as the very object (stays shareable)."""
    state = build_state(policies={"p": ([tcp(80, action="allow")], [])}, tiers=[tier("t", ingress=["p"])])
    compiled = compile_endpoint(state, EP, "ingress")
    assert restrict(compiled, _ep(state), "ingress") is compiled
    with pytest.raises(ValueError, match="egress"):
        restrict(compiled, _ep(state), "egress")


def test_equal_networks_in_distinct_objects_are_one_bucket() -> None:
    """The index groups by network object first: equal networks made apart still meet."""
    any4, full = _net("0.0.0.0/0"), PortRange(0, 65535)
    rules = [FlatRule("allow", 4, _net(src), any4, 6, full, full)
             for src in ("10.1.0.0/16", "10.2.0.0/16", "10.1.0.0/16", "10.1.7.0/24")]
    assert rules[0].src is not rules[2].src
    index = ReachIndex(rules, "src")
    assert index.kept(Domain("src", (_net("10.1.7.9/32"),))) == (0, 2, 3)
    assert index.kept(Domain("src", (_net("10.0.0.0/8"),))) == (0, 1, 2, 3)
    assert index.kept(Domain("src", (_net("10.2.0.0/24"), _net("10.1.8.0/24")))) == (0, 1, 2)
    assert index.kept(Domain("src", (_net("fd00::1/128"),))) == ()
    with pytest.raises(ValueError, match="src"):
        index.kept(Domain("dst", ()))
