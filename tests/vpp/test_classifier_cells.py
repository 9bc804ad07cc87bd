"""Many gated sets sharing ports (emulator), the shape where the gate used to take nothing: every
set goes to the classifier at once, a (protocol, port) where named ports of other pods make L_0
ragged stays in the ACL for every set and only for that protocol, the "deny TCP 0-1023 from a set"
rules that only matter on gated ports leave L_U, and the connectivity is the evaluator's."""

from __future__ import annotations

import ipaddress

from tests.vpp.helpers import Target, make_driver, state_of
from tests.vpp.test_classifier import PODS, agrees_with_evaluator, established
from vppagent.lab import builders as b

SETS = 12
CLIENT = PODS["ns/client"]  # in c0 and c5, and in c3, whose members are denied tcp 0-1023


def members(k: int) -> list[str]:
    own = [f"10.70.{k}.{i + 1}" for i in range(20)]
    return [*own, CLIENT] if k in (0, 3, 5) else own


def _in_sets(prefix: str) -> bool:
    net = ipaddress.ip_network(prefix)
    return isinstance(net, ipaddress.IPv4Network) and net.subnet_of(ipaddress.IPv4Network("10.70.0.0/16"))


def messages() -> list:  # type: ignore[type-arg]
    rules = [b.rule("allow", protocol="tcp", dst_named_port_ip_set_ids=["n:http"]),
             b.rule("deny", protocol="tcp", src_ip_set_ids=["c3"], not_dst_ports=[(1024, 65535)])]
    for k in range(SETS):
        rules += [b.rule("allow", protocol="tcp", dst_ports=[80, 8080], src_ip_set_ids=[f"c{k}"]),
                  b.rule("allow", protocol="udp", dst_ports=[8080], src_ip_set_ids=[f"c{k}"])]
    web_tiers = [b.tier("default", ingress=["web"], namespace="ns")]
    return [
        b.config({}),
        *[b.ipset(f"c{k}", members(k), kind="ip") for k in range(SETS)],
        b.ipset("n:http", [f"10.71.0.{i + 1},tcp:8080" for i in range(40)], kind="ip_and_port"),
        b.policy("web", namespace="ns", inbound=rules),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        *[b.workload(p, f"cali{i}", ipv4=[f"{ip}/32"], tiers=web_tiers if p.startswith("ns/web") else [],
                     profiles=["open"]) for i, (p, ip) in enumerate(PODS.items())],
    ]


def test_sets_sharing_ports_are_gated_together(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        state = state_of(messages())
        assert driver.resync(state).ok
        assert driver._compiler.gated == 1, "one list spec (web0 and web1), gated"
        gate = next(c.gate for c in driver._compiler._cache.values() if c.gate is not None)
        assert len(gate.sets) == SETS, "every set in one gate"
        members_in_acls = [(int(r.proto), int(r.dstport_or_icmpcode_first), int(r.dstport_or_icmpcode_last))
                           for d in sim_target.our_acls().values() for r in d.r
                           if _in_sets(str(r.src_prefix))]
        assert members_in_acls, "tcp/8080 stays in the ACL (named ports of other pods there)"
        assert set(members_in_acls) == {(6, 8080, 8080)}, "udp/8080 and tcp/80 are gated; no deny left"
        agrees_with_evaluator(sim_target, interfaces, state, ("ns/web0",),
                              (("tcp", 80), ("tcp", 8080), ("udp", 8080), ("tcp", 22)))
        # the client is in c0 (allowed on tcp/80) and in c3 (denied tcp 0-1023 first): dropped on 80
        assert not established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "udp", 8080)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 8080)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "udp", 8080)
    finally:
        driver.close()
