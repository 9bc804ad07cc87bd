"""acl/tuplemerge.py: the steered list gives every packet the action the list gave it, by first
match, for whole packets and for non-first fragments (matched on protocol and addresses only), and
it has the shape that keeps VPP's TupleMerge keyed by port (seed first, then the rules that would
lose their port). Random lists over a small address and port universe, so rules overlap often."""

from __future__ import annotations

import ipaddress
import random

import pytest

from tests.vpp.first_match import Pkt, first_action
from vppagent.drivers.vpp.acl import tuplemerge
from vppagent.drivers.vpp.acl.render import allow_any, rules_from_compiled
from vppagent.drivers.vpp.acl.tuplemerge import loses_port, seed_rule, steer
from vppagent.drivers.vpp.api.types import DENY, PERMIT_REFLECT, AclRule
from vppagent.policy.flat import CompiledList, FlatRule, PortRange
from vppagent.policy.model import IPAddress

ANY_PORTS = (0, 65535)
NETS4 = ["10.64.0.0/26", "10.64.0.0/24", "10.64.1.0/24", "10.0.0.0/8", "0.0.0.0/0", "240.0.0.0/4",
         "241.0.0.0/8", "224.0.0.0/4", "192.168.0.0/16", "10.64.0.8/29"]
NETS6 = ["fd00::/8", "fd00:1::/64", "::/0", "4000::/4", "4001::/16", "2001:db8::/32"]
PORTS = [(443, 443), (8080, 8080), (0, 0), (9000, 9009), ANY_PORTS, (53, 53)]


def host_rule(rng: random.Random, version: int, action: int) -> AclRule:
    """Mostly member-shaped rules (a host or small prefix from a set, to any address, one port)."""
    if version == 4:
        src = ipaddress.ip_network(f"10.64.{rng.randrange(2)}.{rng.randrange(64)}/{rng.choice((32, 32, 31, 29))}",
                                   strict=False)
        dst = ipaddress.ip_network(rng.choice(NETS4[:5]) if rng.random() < 0.2 else "0.0.0.0/0")
    else:
        src = ipaddress.ip_network(f"fd00:1::{rng.randrange(64):x}/{rng.choice((128, 127, 125))}", strict=False)
        dst = ipaddress.ip_network("::/0")
    return AclRule(action, src, dst, rng.choice((6, 6, 17)), ANY_PORTS, rng.choice(PORTS))


def random_rule(rng: random.Random) -> AclRule:
    action = rng.choice((PERMIT_REFLECT, PERMIT_REFLECT, DENY))
    version = 4 if rng.random() < 0.75 else 6
    if rng.random() < 0.6:
        return host_rule(rng, version, action)
    nets = NETS4 if version == 4 else NETS6
    proto = rng.choice((0, 1, 6, 17, 6, 17))
    src, dst = ipaddress.ip_network(rng.choice(nets)), ipaddress.ip_network(rng.choice(nets))
    return AclRule(action, src, dst, proto, rng.choice(PORTS), rng.choice(PORTS))


def probe_packets(rng: random.Random, rules: tuple[AclRule, ...], count: int) -> list[Pkt]:
    """Packets at the rules' edges (first and last address of each prefix, port bounds) and
    random ones, in both families."""
    addrs: dict[int, list[IPAddress]] = {4: [], 6: []}
    for r in rules:
        for net in (r.src, r.dst):
            addrs[net.version] += [net.network_address, net.broadcast_address]
    addrs[4] += [ipaddress.ip_address("10.64.0.5"), ipaddress.ip_address("172.16.0.1")]
    addrs[6] += [ipaddress.ip_address("fd00:1::5"), ipaddress.ip_address("2001:db8::1")]
    ports = sorted({p for r in rules for rng_ in (r.sport, r.dport) for p in (rng_[0], rng_[1], rng_[1] + 1)} | {1})
    out = []
    for _ in range(count):
        version = rng.choice((4, 6))
        out.append(Pkt(rng.choice(addrs[version]), rng.choice(addrs[version]), rng.choice((1, 6, 17, 47)),
                       rng.choice(ports) % 65536, rng.choice(ports) % 65536))
    return out


@pytest.mark.parametrize("budget", [tuplemerge.MOVE_BUDGET, 3])
def test_steered_lists_give_every_packet_the_same_action(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    monkeypatch.setattr(tuplemerge, "MOVE_BUDGET", budget)
    rng = random.Random(15)
    steered_lists = moved = 0
    for _ in range(400):
        rules = tuple(random_rule(rng) for _ in range(rng.randrange(1, 30)))
        if rng.random() < 0.15:
            rules += allow_any()
        out = steer(rules)
        seeds = len(out) - len(rules)
        assert seeds in (0, 1, 2) and all(s.action == DENY for s in out[:seeds])
        assert sorted(r.text() for r in out[seeds:]) == sorted(r.text() for r in rules), "the same rules"
        if out != rules:
            steered_lists += 1
            moved += sum(1 for a, b in zip(out[seeds:], rules, strict=True) if a != b)
        for pkt in probe_packets(rng, rules, 150):
            for fragment in (False, True):
                assert first_action(out, pkt, fragment) == first_action(rules, pkt, fragment), (
                    f"{pkt} fragment={fragment}\nbefore: {rules}\nafter: {out}")
    # the generator must exercise the change, or the test cannot fail
    assert steered_lists > 100 and moved > 100, (steered_lists, moved)


def test_seed_comes_first_then_the_rules_that_would_lose_their_port() -> None:
    rng = random.Random(7)
    members = [host_rule(rng, 4, PERMIT_REFLECT)._replace(dst=ipaddress.ip_network("0.0.0.0/0"),
                                                          dport=(443, 443), proto=6) for _ in range(5)]
    ranges = [m._replace(dport=(9000, 9009)) for m in members]
    icmp = AclRule(PERMIT_REFLECT, ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("0.0.0.0/0"), 1,
                   (8, 8), ANY_PORTS)
    rules = (ranges[0], members[0], icmp, *members[1:], *ranges[1:])
    out = steer(rules)
    seed = out[0]
    assert (seed.action, str(seed.src), str(seed.dst), seed.dport[0] == seed.dport[1]) == (
        DENY, "240.0.0.0/4", "0.0.0.0/0", True)
    assert out[1:6] == tuple(members), "the members' exact-port rules, in their order, right after the seed"
    assert out[6:] == (ranges[0], icmp, *ranges[1:])
    assert all(loses_port(m) for m in members) and not any(loses_port(r) for r in (*ranges, icmp))


def test_a_rule_does_not_pass_an_earlier_rule_of_the_other_action_it_may_share_packets_with() -> None:
    net = ipaddress.ip_network
    deny_range = AclRule(DENY, net("10.64.0.0/24"), net("0.0.0.0/0"), 6, ANY_PORTS, (9000, 9009))
    # same protocol and overlapping sources: it stays behind, though its port is outside the range
    blocked = AclRule(PERMIT_REFLECT, net("10.64.0.1/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (443, 443))
    free = AclRule(PERMIT_REFLECT, net("10.64.1.1/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (443, 443))
    udp = AclRule(PERMIT_REFLECT, net("10.64.0.2/32"), net("0.0.0.0/0"), 17, ANY_PORTS, (53, 53))
    out = steer((deny_range, blocked, free, udp))
    assert out[1:] == (free, udp, deny_range, blocked)


def test_lists_that_gain_nothing_stay_as_they_are() -> None:
    net = ipaddress.ip_network
    one = (AclRule(PERMIT_REFLECT, net("10.64.0.1/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (443, 443)),)
    assert steer(one) == one, "a single rule that loses its port: a seed would cost a mask type for nothing"
    open_list = (*(one[0]._replace(src=net(f"10.64.0.{i}/32")) for i in range(4)), *allow_any())
    assert steer(open_list) == open_list, "a default allow leaves no /4 a seed could deny"
    egress = tuple(AclRule(PERMIT_REFLECT, net("10.64.0.1/32"), net(f"10.65.0.{i}/32"), 6, ANY_PORTS, (443, 443))
                   for i in range(4))
    assert steer(egress) == egress, "both addresses specific: TupleMerge keeps the port already"
    assert steer(()) == ()


def test_the_seed_avoids_protocols_and_regions_that_permits_reach() -> None:
    net = ipaddress.ip_network
    members = [AclRule(PERMIT_REFLECT, net(f"10.64.0.{i}/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (443, 443))
               for i in range(3)]
    from_anywhere_udp = AclRule(PERMIT_REFLECT, net("0.0.0.0/0"), net("0.0.0.0/0"), 17, ANY_PORTS, (53, 53))
    from_240_tcp = AclRule(PERMIT_REFLECT, net("240.0.0.0/5"), net("0.0.0.0/0"), 6, ANY_PORTS, (1, 1))
    seed = seed_rule((*members, from_anywhere_udp, from_240_tcp), 4)
    assert seed is not None and (str(seed.src), seed.proto) == ("224.0.0.0/4", 6)
    everything = AclRule(PERMIT_REFLECT, net("0.0.0.0/0"), net("0.0.0.0/0"), 0, ANY_PORTS, ANY_PORTS)
    assert seed_rule((*members, everything), 4) is None
    v6 = [AclRule(PERMIT_REFLECT, net(f"fd00::{i}/128"), net("::/0"), 6, ANY_PORTS, (443, 443)) for i in range(3)]
    out = steer((*members, *v6))
    assert [(str(r.src), r.action) for r in out[:2]] == [("240.0.0.0/4", DENY), ("4000::/4", DENY)]


def test_rendered_lists_are_steered() -> None:
    net = ipaddress.ip_network
    flat = tuple(FlatRule("allow", 4, net(f"10.64.0.{i}/32"), net("0.0.0.0/0"), 6, PortRange(0, 65535),
                          PortRange(443, 443)) for i in range(3))
    rules = rules_from_compiled(CompiledList("e", "ingress", flat, "deny", len(flat)))
    assert len(rules) == 4 and rules[0].action == DENY and str(rules[0].src) == "240.0.0.0/4"


def test_a_port_with_more_rules_than_vpp_keeps_in_one_entry_keeps_its_place() -> None:
    net = ipaddress.ip_network
    crowd = tuple(AclRule(PERMIT_REFLECT, net(f"10.64.{i // 200}.{i % 200}/32"), net("0.0.0.0/0"), 6, ANY_PORTS,
                          (8443, 8443)) for i in range(tuplemerge.MAX_PORT_GROUP + 1))
    ranged = AclRule(PERMIT_REFLECT, net("10.65.0.1/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (9000, 9009))
    few = tuple(AclRule(PERMIT_REFLECT, net(f"10.66.0.{i}/32"), net("0.0.0.0/0"), 6, ANY_PORTS, (443, 443))
                for i in range(2))
    assert steer((ranged, *crowd)) == (ranged, *crowd), "only the crowded port: nothing moves, no seed"
    out = steer((ranged, *crowd, *few))
    assert out[1:] == (*few, ranged, *crowd)
