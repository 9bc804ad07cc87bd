"""Hand-written cases from Felix's semantics (../shared/notes/felix-semantics.md, section in each
test's name or docstring). Each asserts the evaluator's verdict and that the compiled list agrees."""

from __future__ import annotations

import pytest

from tests.policy.helpers import ALLOW_ALL, EP, build_state, check, tcp, tier
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet

IN = "ingress"
OUT = "egress"
WEB = "tcp 10.65.1.3:40000 > 10.65.0.2:80"
DNS = "udp 10.65.1.3:40000 > 10.65.0.2:53"


# -- S3: tiers, pass, default action, profiles ------------------------------------------------------

def test_no_tiers_no_profiles_denies() -> None:
    v = check(build_state(), IN, WEB, "deny")
    assert v.reason == "no profile matched"


def test_no_tiers_allow_profile_allows() -> None:
    v = check(build_state(profiles={"kns.default": ALLOW_ALL}, profile_ids=["kns.default"]), IN, WEB, "allow")
    assert v.profile == "kns.default" and v.rule_index == 0


def test_admin_down_denies_even_with_allow_profile() -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"], state="")
    assert check(state, IN, WEB, "deny").reason == "endpoint admin down"


def test_tier_without_policies_in_direction_is_skipped() -> None:
    state = build_state(policies={"deny-in": ([{"action": "deny"}], [])}, tiers=[tier("t", ingress=["deny-in"])],
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    check(state, IN, WEB, "deny")
    check(state, OUT, "tcp 10.65.0.2:40000 > 10.65.1.3:80", "allow")


def test_policy_with_zero_rules_still_ends_tier_with_deny() -> None:
    state = build_state(policies={"isolate": ([], [])}, tiers=[tier("t", ingress=["isolate"])],
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    v = check(state, IN, WEB, "deny")
    assert (v.reason, v.tier) == ("end of tier", "t")


def test_default_action_pass_falls_through_to_profiles() -> None:
    state = build_state(policies={"isolate": ([], [])}, tiers=[tier("t", ingress=["isolate"], default="Pass")],
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    check(state, IN, WEB, "allow")


@pytest.mark.parametrize("default", ["pass", "", "PASS", "Deny", "Allow"])
def test_default_action_other_than_exact_pass_denies(default: str) -> None:
    state = build_state(policies={"isolate": ([], [])}, tiers=[tier("t", ingress=["isolate"], default=default)],
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    check(state, IN, WEB, "deny")


def test_pass_skips_rest_of_tier_and_next_tier_decides() -> None:
    state = build_state(
        policies={"a": ([{"action": "pass"}], []), "b": ([{"action": "deny"}], []),
                  "c": ([tcp(80, action="allow")], [])},
        tiers=[tier("t1", ingress=["a", "b"]), tier("t2", ingress=["c"])])
    v = check(state, IN, WEB, "allow")
    assert (v.tier, v.policy, v.rule_index) == ("t2", "policy default/c", 0)
    check(state, IN, DNS, "deny")  # end of t2


def test_pass_out_of_last_tier_goes_to_profiles() -> None:
    state = build_state(policies={"a": ([{"action": "next-tier"}, {"action": "deny"}], [])},
                        tiers=[tier("t", ingress=["a"])], profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    assert check(state, IN, WEB, "allow").profile == "p"


def test_pass_out_of_last_tier_without_profiles_denies() -> None:
    state = build_state(policies={"a": ([{"action": "pass"}], [])}, tiers=[tier("t", ingress=["a"])])
    assert check(state, IN, WEB, "deny").reason == "no profile matched"


def test_pass_in_profile_tries_next_profile() -> None:
    state = build_state(profiles={"p1": ([{"action": "pass"}, {"action": "deny"}], []), "p2": ALLOW_ALL},
                        profile_ids=["p1", "p2"])
    assert check(state, IN, WEB, "allow").profile == "p2"


def test_pass_in_only_profile_does_not_allow() -> None:
    state = build_state(profiles={"p1": ([{"action": "pass"}, {"action": "allow"}], [])}, profile_ids=["p1"])
    check(state, IN, WEB, "deny")


def test_profile_without_match_tries_next_profile_in_order() -> None:
    state = build_state(profiles={"p1": ([tcp(22, action="deny")], []), "p2": ([tcp(80, action="deny")], []),
                                  "p3": ALLOW_ALL}, profile_ids=["p1", "p2", "p3"])
    check(state, IN, WEB, "deny")
    check(state, IN, DNS, "allow")


def test_log_continues_to_next_rule() -> None:
    state = build_state(policies={"a": ([{"action": "log"}, tcp(80, action="allow")], [])},
                        tiers=[tier("t", ingress=["a"])])
    assert check(state, IN, WEB, "allow").rule_index == 1


def test_log_only_policy_falls_through_to_end_of_tier() -> None:
    state = build_state(policies={"a": ([{"action": "log"}], []), "b": ([{"action": "Log"}], [])},
                        tiers=[tier("t", ingress=["a", "b"])], profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    assert check(state, IN, WEB, "deny").reason == "end of tier"


def test_empty_action_means_allow() -> None:
    state = build_state(policies={"a": ([{}], [])}, tiers=[tier("t", ingress=["a"])])
    check(state, IN, WEB, "allow")


def test_staged_policies_are_ignored_and_all_staged_tier_acts_as_pass() -> None:
    state = build_state(policies={"s": ([{"action": "deny"}], [])}, staged=("s",),
                        tiers=[tier("t", ingress=["s"], staged=("s",))], profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    check(state, IN, WEB, "allow")
    state = build_state(policies={"s": ([{"action": "allow"}], []), "real": ([], [])}, staged=("s",),
                        tiers=[tier("t", ingress=["s", "real"], staged=("s",))])
    check(state, IN, WEB, "deny")


def test_first_tier_deny_beats_later_allow() -> None:
    state = build_state(policies={"a": ([tcp(80, action="deny")], []), "b": ([{"action": "allow"}], [])},
                        tiers=[tier("t1", ingress=["a"], default="Pass"), tier("t2", ingress=["b"])])
    check(state, IN, WEB, "deny")
    check(state, IN, DNS, "allow")


def test_worked_example_1_pass_in_last_tier_then_profiles() -> None:
    """S11 example 1."""
    kwargs = dict(
        ipsets={"s:bad": ("NET", ["10.65.1.8/29"])},
        policies={"quarantine": ([{"action": "pass", "not_src_ip_set_ids": ["s:bad"]}, {"action": "deny"}], []),
                  "sec-allow-dns": ([{"action": "allow", "protocol": {"name": "udp"},
                                      "dst_ports": [{"first": 53}]}], []),
                  "app-pol": ([tcp(80, action="pass"),
                               {"action": "allow", "protocol": {"name": "tcp"}, "src_net": ["10.65.1.0/28"]}], [])},
        profiles={"kns.default": ALLOW_ALL}, profile_ids=["kns.default"])
    state = build_state(tiers=[tier("security", ingress=["quarantine", "sec-allow-dns"]),
                               tier("app", ingress=["app-pol"], default="Pass")], **kwargs)
    assert check(state, IN, WEB, "allow").profile == "kns.default"
    check(state, IN, DNS, "allow")
    check(state, IN, "tcp 10.65.1.9:40000 > 10.65.0.2:80", "deny")
    check(state, OUT, "tcp 10.65.0.2:40000 > 10.65.1.9:80", "allow")
    state = build_state(tiers=[tier("security", ingress=["quarantine", "sec-allow-dns"]),
                               tier("app", ingress=["app-pol"], default="Deny")], **kwargs)
    check(state, IN, DNS, "deny")


# -- S4: rule matching ------------------------------------------------------------------------------

EXAMPLE2 = dict(
    ipsets={"s:a": ("NET", ["10.65.1.0/29"]), "s:b": ("NET", ["10.65.1.3/32"]),
            "n:http": ("IP_AND_PORT", ["10.65.0.2,tcp:8080"])},
    policies={"p": ([{"action": "allow", "protocol": {"name": "tcp"}, "src_ip_set_ids": ["s:a", "s:b"],
                      "dst_ports": [{"first": 22}], "dst_named_port_ip_set_ids": ["n:http"],
                      "not_dst_ports": [{"first": 8443}]}], [])},
    tiers=[tier("t", ingress=["p"])])


@pytest.mark.parametrize(("packet", "expected"), [
    ("tcp 10.65.1.3:40000 > 10.65.0.2:8080", "allow"),  # both sets, named port
    ("tcp 10.65.1.4:40000 > 10.65.0.2:8080", "deny"),   # in s:a, not in s:b
    ("udp 10.65.1.3:40000 > 10.65.0.2:8080", "deny"),   # named-port member is tcp
    ("tcp 10.65.1.3:40000 > 10.65.0.2:22", "allow"),    # numeric port ORs with named port
    ("tcp 10.65.1.3:40000 > 10.65.0.3:8080", "deny"),   # named port is for 10.65.0.2 only
])
def test_worked_example_2_sets_named_ports_negation(packet: str, expected: str) -> None:
    check(build_state(**EXAMPLE2), IN, packet, expected)


def test_worked_example_3_every_or_group_enforced() -> None:
    """S4.9: intended semantics, the third and fourth match blocks count too."""
    state = build_state(
        ipsets={"n:np": ("IP_AND_PORT", ["10.65.0.9,tcp:8080"])},
        policies={"p": ([], [{"action": "allow", "protocol": {"name": "tcp"}, "dst_ports": [{"first": 80}],
                              "dst_named_port_ip_set_ids": ["n:np"], "src_net": ["10.65.0.0/30", "10.65.0.8/30"],
                              "dst_net": ["10.65.1.0/30", "10.65.1.8/30"]}])},
        tiers=[tier("t", egress=["p"])])
    check(state, OUT, "tcp 10.65.0.2:40000 > 10.65.1.5:80", "deny")
    check(state, OUT, "tcp 10.65.0.2:40000 > 10.65.1.1:80", "allow")


def _one_rule(rule: dict[str, object], **kwargs: object) -> object:
    return build_state(policies={"p": ([rule], [rule])}, tiers=[tier("t", ingress=["p"], egress=["p"])],
                       **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rule", "packet", "expected"), [
    ({"not_src_net": ["10.65.1.0/30"]}, "tcp 10.65.1.2:1 > 10.65.0.2:80", "deny"),
    ({"not_src_net": ["10.65.1.0/30"]}, "tcp 10.65.1.4:1 > 10.65.0.2:80", "allow"),
    ({"src_net": ["10.65.1.0/28"], "not_src_net": ["10.65.1.0/30"]}, "udp 10.65.1.3:1 > 10.65.0.2:53", "deny"),
    ({"src_net": ["10.65.1.0/28"], "not_src_net": ["10.65.1.0/30"]}, "udp 10.65.1.5:1 > 10.65.0.2:53", "allow"),
    ({"src_net": ["10.65.1.0/30", "10.65.2.0/24"]}, "tcp 10.65.2.77:1 > 10.65.0.2:80", "allow"),
    ({"not_dst_net": ["10.65.0.0/24", "10.66.0.0/16"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    # S4.7: a non-empty list with no CIDR of the packet's family drops the rule for that family.
    ({"not_src_net": ["fd00::/8"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    ({"not_src_net": ["fd00::/16"]}, "tcp [fd65:1::1]:1 > [fd65::2]:80", "allow"),
    ({"not_src_net": ["fd00::/8"]}, "tcp [fd65:1::1]:1 > [fd65::2]:80", "deny"),
    ({"src_net": ["fd65:1::/64"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    ({"ip_version": 6}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    ({"ip_version": 6}, "icmpv6 fd65:1::1 > fd65::2 type 128", "allow"),
    # Ports.
    ({"protocol": {"name": "tcp"}, "not_dst_ports": [{"first": 80, "last": 90}]}, WEB, "deny"),
    ({"protocol": {"name": "tcp"}, "not_dst_ports": [{"first": 80, "last": 90}]},
     "tcp 10.65.1.3:1 > 10.65.0.2:91", "allow"),
    ({"protocol": {"name": "udp"}, "src_ports": [{"first": 53}]}, "udp 10.65.1.3:53 > 10.65.0.2:9", "allow"),
    ({"protocol": {"name": "udp"}, "not_src_ports": [{"first": 1, "last": 1023}]},
     "udp 10.65.1.3:53 > 10.65.0.2:9", "deny"),
    ({"protocol": {"number": 6}, "dst_ports": [{"first": 80}]}, WEB, "allow"),
    ({"protocol": {"name": "TCP"}, "dst_ports": [{"first": 80}]}, DNS, "deny"),
    ({"not_protocol": {"name": "tcp"}}, WEB, "deny"),
    ({"not_protocol": {"name": "tcp"}}, "47 10.65.1.3 > 10.65.0.2", "allow"),
    ({"protocol": {"number": 47}}, "47 10.65.1.3 > 10.65.0.2", "allow"),
    # S4.8: ICMP.
    ({"protocol": {"name": "icmp"}, "icmp_type": 8}, "icmp 10.65.1.3 > 10.65.0.2 type 8 code 5", "allow"),
    ({"protocol": {"name": "icmp"}, "icmp_type": 8}, "icmp 10.65.1.3 > 10.65.0.2 type 13", "deny"),
    ({"protocol": {"name": "icmp"}, "icmp_type_code": {"type": 8, "code": 0}},
     "icmp 10.65.1.3 > 10.65.0.2 type 8 code 1", "deny"),
    ({"protocol": {"name": "icmp"}, "icmp_type_code": {"type": 8, "code": 0}},
     "icmp 10.65.1.3 > 10.65.0.2 type 8 code 0", "allow"),
    ({"protocol": {"name": "icmp"}, "not_icmp_type_code": {"type": 8, "code": 0}},
     "icmp 10.65.1.3 > 10.65.0.2 type 8 code 1", "allow"),
    ({"protocol": {"name": "icmp"}, "not_icmp_type_code": {"type": 8, "code": 0}},
     "icmp 10.65.1.3 > 10.65.0.2 type 13 code 0", "allow"),
    ({"protocol": {"name": "icmp"}, "not_icmp_type_code": {"type": 8, "code": 0}},
     "icmp 10.65.1.3 > 10.65.0.2 type 8 code 0", "deny"),
    ({"protocol": {"name": "icmp"}, "not_icmp_type": 8}, "icmp 10.65.1.3 > 10.65.0.2 type 8 code 3", "deny"),
    ({"protocol": {"name": "icmp"}}, "icmpv6 fd65:1::1 > fd65::2 type 128", "deny"),  # icmp implies IPv4
    ({"protocol": {"name": "icmpv6"}, "icmp_type": 128}, "icmpv6 fd65:1::1 > fd65::2 type 128", "allow"),
    ({"protocol": {"number": 1}, "icmp_type": 8}, "1 fd65:1::1 > fd65::2", "deny"),  # ICMP fields: v4 ICMP only
])
def test_rule_match(rule: dict[str, object], packet: str, expected: str) -> None:
    check(_one_rule({"action": "allow", **rule}), IN, packet, expected)  # type: ignore[arg-type]


SETS = {"s:a": ("NET", ["10.65.1.0/29", "fd65:1::/124"]), "s:b": ("NET", ["10.65.1.4/30"]),
        "s:ip": ("IP", ["10.65.1.0/28"]), "n:web": ("IP_AND_PORT", ["10.65.0.2,tcp:80", "10.65.0.2,udp:53"]),
        "n:dns": ("IP_AND_PORT", ["10.65.0.2,udp:53"])}


@pytest.mark.parametrize(("rule", "packet", "expected"), [
    ({"src_ip_set_ids": ["s:a", "s:b"]}, "tcp 10.65.1.5:1 > 10.65.0.2:80", "allow"),
    ({"src_ip_set_ids": ["s:a", "s:b"]}, "tcp 10.65.1.2:1 > 10.65.0.2:80", "deny"),
    ({"not_src_ip_set_ids": ["s:a", "s:b"]}, "tcp 10.65.1.2:1 > 10.65.0.2:80", "deny"),
    ({"not_src_ip_set_ids": ["s:b"]}, "tcp 10.65.1.2:1 > 10.65.0.2:80", "allow"),
    ({"src_ip_set_ids": ["s:a"]}, "tcp [fd65:1::3]:1 > [fd65::2]:80", "allow"),
    # An IP-type member keeps only its address (S5.1): 10.65.1.0/28 means 10.65.1.0.
    ({"src_ip_set_ids": ["s:ip"]}, "tcp 10.65.1.0:1 > 10.65.0.2:80", "allow"),
    ({"src_ip_set_ids": ["s:ip"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    # Named ports carry the protocol; a rule may name ports without a protocol.
    ({"dst_named_port_ip_set_ids": ["n:web"]}, "udp 10.65.1.1:1 > 10.65.0.2:53", "allow"),
    ({"dst_named_port_ip_set_ids": ["n:web"]}, "udp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    ({"not_dst_named_port_ip_set_ids": ["n:web"]}, "icmp 10.65.1.1 > 10.65.0.2 type 8", "allow"),
    ({"not_dst_named_port_ip_set_ids": ["n:web"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
    # Service sets AND.
    ({"dst_ip_port_set_ids": ["n:web", "n:dns"]}, "udp 10.65.1.1:1 > 10.65.0.2:53", "allow"),
    ({"dst_ip_port_set_ids": ["n:web", "n:dns"]}, "tcp 10.65.1.1:1 > 10.65.0.2:80", "deny"),
])
def test_ipset_match(rule: dict[str, object], packet: str, expected: str) -> None:
    check(_one_rule({"action": "allow", **rule}, ipsets=SETS), IN, packet, expected)  # type: ignore[arg-type]


def test_v4_v6_mix_on_one_endpoint() -> None:
    state = build_state(policies={"p": ([{"action": "allow", "src_net": ["fd65:1::/64"]},
                                         {"action": "deny", "src_net": ["10.65.1.0/24"]},
                                         {"action": "allow"}], [])},
                        tiers=[tier("t", ingress=["p"])])
    check(state, IN, "tcp [fd65:1::9]:1 > [fd65::2]:80", "allow")
    check(state, IN, "tcp 10.65.1.9:1 > 10.65.0.2:80", "deny")
    check(state, IN, "tcp 10.65.2.9:1 > 10.65.0.2:80", "allow")


# -- S2 step 6: encapsulation drops ------------------------------------------------------------------

@pytest.mark.parametrize(("config", "packet", "expected"), [
    ({}, "udp 10.65.0.2:1 > 10.65.1.1:4789", "deny"),
    ({"AllowVXLANPacketsFromWorkloads": "true"}, "udp 10.65.0.2:1 > 10.65.1.1:4789", "allow"),
    ({"VXLANPort": "8472"}, "udp 10.65.0.2:1 > 10.65.1.1:4789", "allow"),
    ({"VXLANPort": "8472"}, "udp 10.65.0.2:1 > 10.65.1.1:8472", "deny"),
    ({}, "4 10.65.0.2 > 10.65.1.1", "deny"),
    ({"allowipippacketsfromworkloads": "true"}, "4 10.65.0.2 > 10.65.1.1", "allow"),
])
def test_encap_dropped_from_workload_before_policy(config: dict[str, str], packet: str, expected: str) -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"], config=config)
    check(state, OUT, packet, expected)


def test_encap_not_dropped_towards_workload() -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    check(state, IN, "udp 10.65.1.1:1 > 10.65.0.2:4789", "allow")


def test_conntrack_invalid_first_packet() -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"])
    reply = Packet.parse("icmp 10.65.1.1 > 10.65.0.2 type 0")
    assert verdict(state, EP, IN, reply).allowed
    assert verdict(state, EP, IN, reply, ct=True).reason == "conntrack invalid"
    assert verdict(state, EP, IN, Packet.parse("icmp 10.65.1.1 > 10.65.0.2 type 8"), ct=True).allowed
