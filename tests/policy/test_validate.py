"""validate_policy / validate_profile: what the store holds back, and how the error reads."""

from __future__ import annotations

import pytest

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.model import PolicyError, build_policy, validate_policy, validate_profile
from vppagent.state.ipset import IPSet
from vppagent.state.model import PolicyKey

KEY = PolicyKey("allow-web", "default", "")
IPSETS = {
    "s:net": IPSet.build("s:net", 2, ["10.0.0.0/24"]),
    "n:http": IPSet.build("n:http", 1, ["10.0.0.1,tcp:8080"]),
    "s:bad": IPSet.build("s:bad", 2, ["10.0.0.0/24", "not-an-ip"]),
}


def _policy(*rules: felix.Rule, outbound: bool = False) -> felix.Policy:
    return felix.Policy(outbound_rules=rules) if outbound else felix.Policy(inbound_rules=rules)


def _error(rule: felix.Rule, index: int = 0, outbound: bool = False) -> str:
    rules = [felix.Rule(action="allow")] * index + [rule]
    with pytest.raises(PolicyError) as exc:
        validate_policy(KEY, _policy(*rules, outbound=outbound), IPSETS)
    return str(exc.value)


def test_error_names_policy_rule_index_and_direction() -> None:
    msg = _error(felix.Rule(src_net=["10.0.0.300/32"]), index=3)
    assert msg.startswith("policy default/allow-web (rule 3, inbound): bad CIDR '10.0.0.300/32'")
    assert "(rule 1, outbound)" in _error(felix.Rule(dst_net=["nope"]), index=1, outbound=True)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (felix.Rule(protocol=felix.Protocol(name="tcp"), dst_ports=[felix.PortRange(first=90, last=80)]),
         "first > last"),
        (felix.Rule(protocol=felix.Protocol(name="tcp"), dst_ports=[felix.PortRange(first=70000)]),
         "outside 0-65535"),
        (felix.Rule(protocol=felix.Protocol(name="tcpp")), "unknown protocol name 'tcpp'"),
        (felix.Rule(not_protocol=felix.Protocol(number=300)), "out of range"),
        (felix.Rule(icmp_type=8), "ICMP type/code needs protocol"),
        (felix.Rule(protocol=felix.Protocol(name="tcp"), not_icmp_type=8), "ICMP type/code needs protocol"),
        (felix.Rule(src_net=["10.0.0.0/8"], dst_net=["fd00::/8"]), "mixed families"),
        (felix.Rule(ip_version=6, src_net=["10.0.0.0/8"]), "mixed families"),
        (felix.Rule(protocol=felix.Protocol(name="icmp"), ip_version=6), "mixed families"),
        (felix.Rule(protocol=felix.Protocol(number=1), icmp_type=8, src_net=["fd00::/8"]), "mixed families"),
        (felix.Rule(dst_ports=[felix.PortRange(first=80)]), "numeric ports need protocol"),
        (felix.Rule(protocol=felix.Protocol(name="icmp"), dst_ports=[felix.PortRange(first=80)]),
         "numeric ports need protocol"),
        (felix.Rule(protocol=felix.Protocol(name="tcp"), not_protocol=felix.Protocol(name="udp")),
         "protocol and not_protocol"),
        (felix.Rule(action="reject"), "unknown action 'reject'"),
        (felix.Rule(src_ip_set_ids=["s:missing"]), "missing IP set 's:missing'"),
        (felix.Rule(not_dst_ip_set_ids=["s:bad"]), "invalid members 'not-an-ip'"),
        (felix.Rule(src_ip_set_ids=["n:http"]), "used as an address set"),
        (felix.Rule(dst_named_port_ip_set_ids=["s:net"]), "used as an ip,proto:port set"),
        (felix.Rule(dst_ip_port_set_ids=["s:missing"]), "missing IP set"),
    ],
)
def test_rejected(rule: felix.Rule, fragment: str) -> None:
    assert fragment in _error(rule)


@pytest.mark.parametrize(
    "rule",
    [
        felix.Rule(),
        felix.Rule(action="Deny", protocol=felix.Protocol(name="TCP"), dst_ports=[felix.PortRange(first=80)]),
        felix.Rule(action="next-tier", protocol=felix.Protocol(number=17), not_src_ports=[
            felix.PortRange(first=1, last=1023)]),
        felix.Rule(action="log", protocol=felix.Protocol(name="icmp"), icmp_type_code=felix.IcmpTypeAndCode(
            type=8, code=0)),
        felix.Rule(protocol=felix.Protocol(name="icmpv6"), not_icmp_type=128, src_net=["fd00::/8"]),
        felix.Rule(src_ip_set_ids=["s:net"], dst_named_port_ip_set_ids=["n:http"],
                   dst_ip_port_set_ids=["n:http"]),
        felix.Rule(not_protocol=felix.Protocol(name="udp"), not_src_net=["10.1.0.0/16"]),
    ],
)
def test_accepted(rule: felix.Rule) -> None:
    validate_policy(KEY, _policy(rule), IPSETS)
    validate_profile("kns.default", felix.Profile(outbound_rules=[rule]), IPSETS)


def test_profile_error_names_profile() -> None:
    with pytest.raises(PolicyError, match=r"^profile kns\.x \(rule 1, outbound\): bad CIDR"):
        validate_profile("kns.x", felix.Profile(outbound_rules=[felix.Rule(), felix.Rule(dst_net=["x"])]), {})


def test_icmp_name_implies_family_and_single_port_range() -> None:
    policy = build_policy(KEY, _policy(
        felix.Rule(protocol=felix.Protocol(name="icmp")),
        felix.Rule(protocol=felix.Protocol(name="tcp"), dst_ports=[felix.PortRange(first=443)]),
    ))
    assert policy.inbound_rules[0].ip_version == 4
    assert policy.inbound_rules[0].families() == (4,)
    assert [(r.first, r.last) for r in policy.inbound_rules[1].dst_ports] == [(443, 443)]
    assert policy.inbound_rules[1].families() == (4, 6)
