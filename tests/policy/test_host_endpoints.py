"""Host endpoints (S7, S8): failsafes, untracked / pre-DNAT / normal / forward chains."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policy.helpers import ALLOW_ALL, EP, build_state, check_hep, pid, tier
from vppagent.policy.catalog import parse_failsafes
from vppagent.policy.evaluate import forward_verdict, hep_chain, workload_to_host_verdict
from vppagent.policy.packet import Packet

SSH_IN = "tcp 192.168.1.9:40000 > 192.168.1.1:22"
WEB_IN = "tcp 192.168.1.9:40000 > 192.168.1.1:80"
DNS_OUT = "udp 192.168.1.1:40000 > 8.8.8.8:53"


def _hep(**tiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "eth0", "expected_ipv4_addrs": ["192.168.1.1"], "profile_ids": tiers.pop("profiles", []),
            **tiers}


DENY_ALL = ([{"action": "deny"}], [{"action": "deny"}])


def test_hep_without_policy_or_profile_denies_all_but_failsafes() -> None:
    state = build_state(hep=_hep())
    check_hep(state, "ingress", WEB_IN, "deny")
    assert check_hep(state, "ingress", SSH_IN, "allow").reason == "failsafe"
    check_hep(state, "egress", DNS_OUT, "allow")
    check_hep(state, "egress", "tcp 192.168.1.1:40000 > 8.8.8.8:22", "deny")  # 22 is inbound-only


def test_failsafe_beats_deny_policy() -> None:
    state = build_state(policies={"d": DENY_ALL}, hep=_hep(tiers=[tier("t", ["d"], ["d"])]))
    check_hep(state, "ingress", SSH_IN, "allow")
    check_hep(state, "ingress", WEB_IN, "deny")


@pytest.mark.parametrize(("config", "packet", "expected"), [
    ({"FailsafeInboundHostPorts": "none"}, SSH_IN, "deny"),
    ({"FailsafeInboundHostPorts": "tcp:10.0.0.0/8:22"}, SSH_IN, "deny"),
    ({"FailsafeInboundHostPorts": "tcp:192.168.0.0/16:22"}, SSH_IN, "allow"),
    ({"FailsafeInboundHostPorts": "udp:22"}, SSH_IN, "deny"),
    ({"FailsafeInboundHostPorts": "tcp:80"}, WEB_IN, "allow"),
])
def test_failsafe_config(config: dict[str, str], packet: str, expected: str) -> None:
    check_hep(build_state(config=config, hep=_hep()), "ingress", packet, expected)


def test_parse_failsafes_syntax() -> None:
    got = parse_failsafes("tcp:22, udp:[fd00::/8]:53,tcp:10.0.0.0/8:179, 6443")
    assert [(f.proto, f.port, str(f.net) if f.net else None) for f in got] == [
        (6, 22, None), (17, 53, "fd00::/8"), (6, 179, "10.0.0.0/8"), (6, 6443, None)]


def test_normal_chain_uses_profiles() -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, hep=_hep(profiles=["p"]))
    check_hep(state, "ingress", WEB_IN, "allow")


def test_untracked_allow_is_final_and_fallthrough_reaches_normal() -> None:
    state = build_state(
        policies={"u": ([{"action": "allow", "protocol": {"name": "tcp"}, "dst_ports": [{"first": 80}]}], []),
                  "n": DENY_ALL},
        hep=_hep(untracked_tiers=[tier("u", ["u"], default="Pass")], tiers=[tier("n", ["n"])]))
    assert check_hep(state, "ingress", WEB_IN, "allow").tier == "u"
    check_hep(state, "ingress", "tcp 192.168.1.9:40000 > 192.168.1.1:81", "deny")
    assert hep_chain(state, "eth0", "untracked", "ingress", Packet.parse("udp 1.1.1.1:1 > 192.168.1.1:9")).action \
        == "none"


def test_pre_dnat_deny_and_no_end_of_tier_drop() -> None:
    state = build_state(
        policies={"pd": ([{"action": "deny", "src_net": ["192.168.1.9/32"]}], []), "pd2": ([], [])},
        profiles={"p": ALLOW_ALL},
        hep=_hep(pre_dnat_tiers=[tier("pre", ["pd", "pd2"], default="Deny")], profiles=["p"]))
    check_hep(state, "ingress", WEB_IN, "deny")
    check_hep(state, "ingress", "tcp 192.168.1.8:40000 > 192.168.1.1:80", "allow")  # no end-of-tier drop
    check_hep(state, "ingress", SSH_IN, "allow")  # failsafe in mangle, then in filter


def test_forward_chain_default_allow_and_no_decision() -> None:
    pkt = Packet.parse("tcp 192.168.1.9:40000 > 10.1.0.5:80")
    state = build_state(hep=_hep())
    assert hep_chain(state, "eth0", "forward", "ingress", pkt).action == "allow"
    assert forward_verdict(state, "hep:eth0", None, pkt).action == "allow"
    state = build_state(policies={"f": ([], [{"action": "allow"}])},
                        hep=_hep(forward_tiers=[{"name": "f", "egress_policies": [pid("f")],
                                                 "default_action": "Pass"}]))
    # Quirk (S8.2): forward tiers exist (egress only), so forwarded ingress gets no decision.
    assert hep_chain(state, "eth0", "forward", "ingress", pkt).action == "none"
    assert hep_chain(state, "eth0", "forward", "egress", pkt).action == "allow"


def test_forward_between_workload_and_hep_last_chain_decides() -> None:
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"],
                        policies={"f": ([{"action": "deny"}], [])},
                        hep=_hep(forward_tiers=[tier("f", ["f"])]))
    out = Packet.parse("tcp 10.65.0.2:40000 > 192.168.1.9:80")
    # The outgoing HEP's forward chain runs last and clears the accept bit; it has forward tiers
    # but none with egress policy, so it falls through: Calico gives no verdict.
    assert forward_verdict(state, EP, "hep:eth0", out).action == "none"
    assert forward_verdict(state, EP, None, out).action == "allow"
    inbound = Packet.parse("tcp 192.168.1.9:40000 > 10.65.0.2:80")
    assert forward_verdict(state, "hep:eth0", EP, inbound).action == "deny"


@pytest.mark.parametrize(("action", "expected"), [("", "deny"), ("DROP", "deny"), ("ACCEPT", "allow"),
                                                  ("RETURN", "none")])
def test_workload_to_host_default_endpoint_to_host_action(action: str, expected: str) -> None:
    config = {"DefaultEndpointToHostAction": action} if action else {}
    state = build_state(profiles={"p": ALLOW_ALL}, profile_ids=["p"], config=config)
    assert workload_to_host_verdict(state, EP, Packet.parse("tcp 10.65.0.2:1 > 192.168.1.1:22")).action == expected


def test_workload_to_host_egress_deny_wins_and_v6_nd_passes() -> None:
    state = build_state(config={"DefaultEndpointToHostAction": "ACCEPT"})
    assert workload_to_host_verdict(state, EP, Packet.parse("tcp 10.65.0.2:1 > 192.168.1.1:22")).action == "deny"
    assert workload_to_host_verdict(state, EP, Packet.parse("icmpv6 fd65::2 > fe80::1 type 135")).allowed
