"""Compiler specifics: VPP rule semantics, determinism, bounds, refusals, the worked example."""

from __future__ import annotations

import ipaddress

import pytest

from tests.policy.helpers import ALLOW_ALL, EP, build_state, tcp, tier
from vppagent.policy.compile import (
    CompileError,
    FlatRule,
    RuleLimitExceeded,
    compile_endpoint,
    compile_host_endpoint,
    first_match,
)
from vppagent.policy.model import PolicyError, PortRange
from vppagent.policy.packet import Packet

ANY4 = ipaddress.ip_network("0.0.0.0/0")
FULL = PortRange(0, 65535)


def _rule(proto: int, a: tuple[int, int] = (0, 65535), b: tuple[int, int] = (0, 65535)) -> FlatRule:
    return FlatRule("allow", 4, ANY4, ANY4, proto, PortRange(*a), PortRange(*b))


@pytest.mark.parametrize(("rule", "packet", "matches"), [
    (_rule(0), "47 1.1.1.1 > 2.2.2.2", True),
    (_rule(6, b=(80, 80)), "tcp 1.1.1.1:5 > 2.2.2.2:80", True),
    (_rule(6, b=(80, 80)), "udp 1.1.1.1:5 > 2.2.2.2:80", False),
    (_rule(1, a=(8, 8), b=(0, 0)), "icmp 1.1.1.1 > 2.2.2.2 type 8 code 0", True),
    (_rule(1, a=(8, 8), b=(1, 255)), "icmp 1.1.1.1 > 2.2.2.2 type 8 code 0", False),
    # VPP reads no ports for SCTP: they are 0, so only a range containing 0 matches.
    (_rule(132, b=(80, 80)), "sctp 1.1.1.1:5 > 2.2.2.2:80", False),
    (_rule(132), "sctp 1.1.1.1:5 > 2.2.2.2:80", True),
    (_rule(0), "tcp [fd00::1]:1 > [fd00::2]:2", False),  # one family per rule
])
def test_flat_rule_follows_vpp_matching(rule: FlatRule, packet: str, matches: bool) -> None:
    assert rule.matches(Packet.parse(packet)) is matches


def _state_with_rules(inbound: list[dict[str, object]], **kwargs: object) -> object:
    return build_state(policies={"p": (inbound, [])}, tiers=[tier("t", ingress=["p"])], **kwargs)  # type: ignore[arg-type]


def test_flat_rules_are_expressible_as_vpp_rules() -> None:
    """Proto 0 only with full ranges; non-TCP/UDP/ICMP rules only with full ranges."""
    state = _state_with_rules([
        {"action": "allow", "not_protocol": {"name": "tcp"}, "not_src_net": ["10.65.1.0/30"]},
        {"action": "pass", "protocol": {"name": "icmp"}, "not_icmp_type_code": {"type": 8, "code": 0}},
        tcp(80, action="deny", not_src_ports=[{"first": 1, "last": 1023}]),
    ], profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    compiled = compile_endpoint(state, EP, "ingress")  # type: ignore[arg-type]
    assert compiled.rules
    for r in compiled.rules:
        assert r.src.version == r.dst.version == r.family
        if r.proto not in (1, 6, 17, 58):
            assert (r.srcport_or_icmptype, r.dstport_or_icmpcode) == (FULL, FULL), str(r)
        if r.proto == 1:
            assert r.srcport_or_icmptype.last <= 255 or r.srcport_or_icmptype == FULL


def test_compile_is_deterministic_and_ignores_member_order() -> None:
    def state(members: list[str]) -> object:
        return _state_with_rules([{"action": "allow", "src_ip_set_ids": ["s"]}, tcp(22, action="deny")],
                                 ipsets={"s": ("NET", members)})
    a = compile_endpoint(state(["10.65.1.0/30", "10.65.1.4/30", "fd65:1::/124"]), EP, "ingress")  # type: ignore[arg-type]
    b = compile_endpoint(state(["fd65:1::/124", "10.65.1.4/30", "10.65.1.0/30"]), EP, "ingress")  # type: ignore[arg-type]
    assert a.render() == b.render() and a.fingerprint() == b.fingerprint()
    # CIDR aggregation: the two /30s become one /29.
    assert any(str(r.src) == "10.65.1.0/29" for r in a.rules)


def test_rule_limit_fails_closed() -> None:
    members = [f"10.65.{i // 256}.{i % 256}/32" for i in range(0, 600, 2)]
    state = _state_with_rules([{"action": "allow", "src_ip_set_ids": ["s"]}], ipsets={"s": ("NET", members)})
    assert len(compile_endpoint(state, EP, "ingress").rules) == 300  # type: ignore[arg-type]
    with pytest.raises(RuleLimitExceeded, match=r"k8s/default/pod/eth0 ingress: .*100"):
        compile_endpoint(state, EP, "ingress", rule_limit=100)  # type: ignore[arg-type]


def test_sctp_port_match_is_refused_but_sctp_without_ports_compiles() -> None:
    state = _state_with_rules([{"action": "allow", "protocol": {"name": "sctp"}, "dst_ports": [{"first": 9}]}])
    with pytest.raises(CompileError, match="SCTP"):
        compile_endpoint(state, EP, "ingress")  # type: ignore[arg-type]
    state = _state_with_rules([{"action": "allow", "protocol": {"name": "sctp"}}])
    compiled = compile_endpoint(state, EP, "ingress")  # type: ignore[arg-type]
    assert first_match(compiled, Packet.parse("sctp 10.65.1.1:5 > 10.65.0.2:9")).allowed


def test_missing_profile_fails_closed() -> None:
    state = build_state(profile_ids=["nope"])
    with pytest.raises(PolicyError, match="profile nope"):
        compile_endpoint(state, EP, "ingress")


def test_default_allow_and_expansion_factor() -> None:
    state = build_state(profiles={"p": ([{"action": "deny", "protocol": {"name": "udp"}}, {"action": "allow"}], [])},
                        profile_ids=["p"])
    compiled = compile_endpoint(state, EP, "ingress")
    assert compiled.default_action == "allow"
    assert [(r.family, r.proto, r.action) for r in compiled.rules] == [(4, 17, "deny"), (6, 17, "deny")]
    assert compiled.source_rules == 2 and compiled.expansion_factor == 1.0


def test_family_defaults_differ() -> None:
    state = build_state(profiles={"p": ([{"action": "allow", "ip_version": 6}], [])}, profile_ids=["p"])
    compiled = compile_endpoint(state, EP, "ingress")
    assert compiled.default_action == "deny"
    assert [(r.family, r.proto, r.action, str(r.src)) for r in compiled.rules] == [(6, 0, "allow", "::/0")]


def test_worked_example_tiers_pass_negation() -> None:
    """docs/policy-mapping.md: a pass with a negated CIDR, then a tier with an allow."""
    state = build_state(
        policies={"sec": ([{"action": "pass", "not_src_net": ["10.65.1.8/29"]}, {"action": "deny"}], []),
                  "app": ([tcp(80, action="allow")], [])},
        tiers=[tier("security", ingress=["sec"]), tier("app", ingress=["app"])])
    compiled = compile_endpoint(state, EP, "ingress")
    v4 = [str(r) for r in compiled.rules if r.family == 4]
    assert v4 == [
        "deny   ipv4 10.65.1.8/29 > 0.0.0.0/0 any",
        "permit ipv4 0.0.0.0/0 > 0.0.0.0/0 tcp sport 0-65535 dport 80",
    ]
    assert compiled.default_action == "deny"


def test_host_endpoint_compiles_failsafes_first() -> None:
    state = build_state(policies={"d": ([{"action": "deny"}], [])},
                        hep={"name": "eth0", "tiers": [tier("t", ingress=["d"])]})
    compiled = compile_host_endpoint(state, "eth0", "ingress")
    assert compiled.rules[0].origin == "failsafe tcp:22"
    assert first_match(compiled, Packet.parse("tcp 1.2.3.4:5 > 5.6.7.8:22")).allowed
    assert not first_match(compiled, Packet.parse("tcp 1.2.3.4:5 > 5.6.7.8:23")).allowed
