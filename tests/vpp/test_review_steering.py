"""Review of acl/tuplemerge.py's steering: the steered list gives every packet the action the
original gives it, by VPP's first match, judged by a small evaluator of this file's own (the
emulator does not model non-first fragments).

The evaluator follows the plugin's linear match (public_inlines.h `single_acl_match_5tuple`):
address family, source and destination prefix; protocol 0 matches any packet, ports and flags
ignored; else the protocol must be equal, a non-first fragment then matches on that alone (the
plugin's default `l4_match_nonfirst_fragment`), a whole packet also on its source and destination
port ranges (ICMP: type and code) and, for TCP, on `flags & mask == value`. No match: deny.

Random lists (hypothesis) over a small universe so that rules overlap often: protocol 0, ICMP and
ICMPv6 type/code ranges, source port ranges, TCP flags, destination prefixes, deny rules ahead of
permits (as negation makes), both families in one list, duplicates, a permit-any at the end, and
the pair-check budget from 0 to unlimited (rules moved in part). Probe packets sit at every
prefix's first and last address, the seeds' regions included, and at every port bound."""

from __future__ import annotations

import ipaddress
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vpp.first_match import Pkt, first_action
from vppagent.drivers.vpp.acl import tuplemerge
from vppagent.drivers.vpp.acl.render import allow_any
from vppagent.drivers.vpp.acl.tuplemerge import steer
from vppagent.drivers.vpp.api.types import DENY, PERMIT, PERMIT_REFLECT, AclRule
from vppagent.policy.model import IPAddress, IPNetwork

ANY = (0, 65535)
NETS = {
    4: ["0.0.0.0/0", "0.0.0.0/1", "240.0.0.0/4", "240.0.0.0/5", "224.0.0.0/4", "224.0.0.1/32", "10.0.0.0/8",
        "10.64.0.0/26", "10.64.0.1/32", "10.64.0.2/31", "10.64.0.8/30", "10.64.1.1/32", "0.0.0.0/4", "16.0.0.1/32"],
    6: ["::/0", "4000::/4", "4000::1/128", "5000::/4", "fd00::/8", "fd00::1/128", "fd00::2/127", "::ffff:10.64.0.1/128",
        "::/4", "8000::/1"],
}
PROTOS = (0, 1, 6, 17, 58, 47)
PORTS = [ANY, (0, 0), (8, 8), (443, 443), (53, 53), (9000, 9009), (0, 1023), (1024, 65535), (3, 3), (65535, 65535)]
FLAGS = [(0, 0), (0x02, 0x02), (0x12, 0x02), (0x04, 0x04), (0x02, 0x00)]  # (mask, value)


@st.composite
def rules_(draw: st.DrawFn) -> AclRule:
    version = draw(st.sampled_from((4, 4, 6)))
    net = ipaddress.ip_network
    if draw(st.booleans()):  # member-shaped: a host or small prefix to any address, one port (what moves)
        src = net(draw(st.sampled_from([n for n in NETS[version] if net(n).prefixlen >= net(n).max_prefixlen - 2])))
        dst = net("0.0.0.0/0" if version == 4 else "::/0")
        dport = draw(st.sampled_from([(443, 443), (53, 53), (0, 0), (8, 8)]))
    else:
        src, dst = net(draw(st.sampled_from(NETS[version]))), net(draw(st.sampled_from(NETS[version])))
        dport = draw(st.sampled_from(PORTS))
    proto = draw(st.sampled_from(PROTOS))
    mask, value = draw(st.sampled_from(FLAGS)) if proto == 6 else (0, 0)
    return AclRule(draw(st.sampled_from((DENY, DENY, PERMIT_REFLECT, PERMIT_REFLECT, PERMIT))), src, dst, proto,
                   draw(st.sampled_from(PORTS)), dport, mask, value)


@st.composite
def lists_(draw: st.DrawFn) -> tuple[AclRule, ...]:
    rules = draw(st.lists(rules_(), min_size=1, max_size=24))
    duplicates: bool = draw(st.booleans())
    if duplicates:  # duplicates, anywhere (the list is never empty)
        for _ in range(draw(st.integers(1, 4))):
            rules.insert(draw(st.integers(0, len(rules))), draw(st.sampled_from(rules)))
    if draw(st.integers(0, 5)) == 0:
        rules += allow_any()
    return tuple(rules)


def probe(rules: tuple[AclRule, ...]) -> list[Pkt]:
    addresses: dict[int, set[IPAddress]] = {4: set(), 6: set()}
    for r in rules:
        for n in (r.src, r.dst):
            addresses[n.version] |= {n.network_address, n.broadcast_address, n.network_address + 1}
    for v, nets in NETS.items():
        for text in nets:
            n = ipaddress.ip_network(text)
            addresses[v] |= {n.network_address, n.broadcast_address}
    ports = sorted({p for r in rules for lo, hi in (r.sport, r.dport) for p in (lo, hi, min(hi + 1, 65535))} | {1})
    protos = sorted({r.proto for r in rules} | {6, 17, 1, 58, 47})
    out = []
    for v in (4, 6):
        srcs, dsts = sorted(addresses[v]), sorted(addresses[v])
        for i, src in enumerate(srcs):
            dst = dsts[(i * 7) % len(dsts)]
            for proto in protos:
                for j, port in enumerate(ports):
                    out.append(Pkt(src, dst, proto, ports[(i + j) % len(ports)], port, (0, 2, 0x12, 4)[j % 4]))
    return out


def same_verdicts(rules: tuple[AclRule, ...], out: tuple[AclRule, ...]) -> None:
    seeds = len(out) - len(rules)
    assert seeds >= 0 and all(r.action == DENY for r in out[:seeds])
    assert sorted(r.text() for r in out[seeds:]) == sorted(r.text() for r in rules), "the same rules"
    for pkt in probe(out):
        for fragment in (False, True):
            assert first_action(out, pkt, fragment) == first_action(rules, pkt, fragment), (
                f"{pkt} fragment={fragment}\nbefore: {[r.text() for r in rules]}\nafter: {[r.text() for r in out]}")


@pytest.mark.parametrize("budget", [tuplemerge.MOVE_BUDGET, 0, 1, 2, 5])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=lists_())
def test_random_lists_keep_every_verdict(rules: tuple[AclRule, ...], budget: int) -> None:
    with mock.patch.object(tuplemerge, "MOVE_BUDGET", budget):
        out = steer(rules)
    same_verdicts(rules, out)


def test_the_generator_makes_lists_that_steer() -> None:
    """The random lists above must exercise the change (moves and seeds), or their test cannot fail."""
    steered = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(rules=lists_())
    def count(rules: tuple[AclRule, ...]) -> None:
        steered.append(steer(rules) != rules)

    count()
    assert sum(steered) >= 10, f"{sum(steered)} of {len(steered)} lists steered"


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def member(src: str, port: int, proto: int = 6, action: int = PERMIT_REFLECT) -> AclRule:
    dst = "0.0.0.0/0" if ":" not in src else "::/0"
    return AclRule(action, net(src), net(dst), proto, ANY, (port, port))


EDGES = {
    "icmp type/code in the port fields, moved past an icmp deny": (
        AclRule(DENY, net("10.64.0.0/26"), net("0.0.0.0/0"), 1, (8, 8), ANY), member("10.64.0.1/32", 0, proto=1),
        member("10.64.0.2/32", 0, proto=1), member("10.64.0.3/32", 443)),
    "proto 0 deny ahead of members": (
        AclRule(DENY, net("10.64.0.0/30"), net("0.0.0.0/0"), 0, (443, 443), (443, 443)),
        member("10.64.0.1/32", 443), member("10.64.0.5/32", 443), member("10.64.0.6/32", 53, proto=17)),
    "a deny only a fragment could share with a member (disjoint ports)": (
        AclRule(DENY, net("10.64.0.0/24"), net("0.0.0.0/0"), 6, ANY, (9000, 9009)),
        member("10.64.0.1/32", 443), member("10.64.0.2/32", 443)),
    "source port ranges and tcp flags on the deny": (
        AclRule(DENY, net("10.64.0.0/24"), net("0.0.0.0/0"), 6, (1024, 65535), ANY, 0x02, 0x02),
        member("10.64.0.1/32", 443), member("10.64.0.2/32", 443)),
    "a deny to one destination prefix": (
        AclRule(DENY, net("0.0.0.0/0"), net("10.65.0.2/32"), 6, ANY, ANY),
        member("10.64.0.1/32", 443), member("10.64.0.2/32", 443), member("10.64.0.3/32", 443)),
    "the seed's /4 meets a permit of another protocol and one of the same protocol from a wider prefix": (
        AclRule(PERMIT_REFLECT, net("240.0.0.0/5"), net("0.0.0.0/0"), 17, ANY, (1, 1)),
        AclRule(PERMIT, net("192.0.0.0/2"), net("0.0.0.0/0"), 6, ANY, (65535, 65535)),
        member("10.64.0.1/32", 443), member("10.64.0.2/32", 443)),
    "every /4 taken but one, by permit (not permit+reflect)": (
        *(AclRule(PERMIT, net(f"{a << 4}.0.0.0/4"), net("0.0.0.0/0"), 0, ANY, ANY) for a in range(16) if a != 3),
        member("10.64.0.1/32", 443), member("10.64.0.2/32", 443)),
    "both families, a v6 deny between v4 members": (
        member("10.64.0.1/32", 443), AclRule(DENY, net("::/0"), net("::/0"), 0, ANY, ANY),
        member("fd00::1/128", 443), member("10.64.0.2/32", 443), member("fd00::2/128", 443),
        AclRule(DENY, net("10.64.0.0/24"), net("0.0.0.0/0"), 6, ANY, ANY), member("10.64.0.3/32", 443)),
    "ipv4-mapped ipv6 sources": (
        member("::ffff:10.64.0.1/128", 443), member("::ffff:10.64.0.2/128", 443),
        AclRule(DENY, net("::ffff:0:0/96"), net("::/0"), 6, ANY, ANY), member("::ffff:10.64.0.3/128", 443)),
    "duplicates on both sides of a deny": (
        member("10.64.0.1/32", 443), member("10.64.0.1/32", 443),
        AclRule(DENY, net("10.64.0.1/32"), net("0.0.0.0/0"), 6, ANY, ANY), member("10.64.0.1/32", 443),
        member("10.64.0.2/32", 443)),
    "permit then deny of the same member and port, moved": (
        AclRule(DENY, net("10.64.0.0/29"), net("0.0.0.0/0"), 6, ANY, (9000, 9000)),
        member("10.64.0.1/32", 443, action=DENY), member("10.64.0.1/32", 443), member("10.64.0.2/32", 443)),
    "ending in permit-any": (member("10.64.0.1/32", 443), member("10.64.0.2/32", 443),
                             AclRule(DENY, net("10.64.0.0/24"), net("0.0.0.0/0"), 6, ANY, ANY), *allow_any()),
}


@pytest.mark.parametrize("budget", [tuplemerge.MOVE_BUDGET, 0, 1, 2])
@pytest.mark.parametrize("name", sorted(EDGES))
def test_edge_lists_keep_every_verdict(name: str, budget: int) -> None:
    rules = EDGES[name]
    with mock.patch.object(tuplemerge, "MOVE_BUDGET", budget):
        out = steer(rules)
    same_verdicts(rules, out)


def test_the_edge_lists_are_steered() -> None:
    """Most edge lists get a seed or a move (else their verdict test shows nothing of the steering)."""
    steered = [name for name, rules in EDGES.items() if steer(rules) != rules]
    assert len(steered) >= len(EDGES) - 2, sorted(set(EDGES) - set(steered))
