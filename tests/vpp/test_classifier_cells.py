"""Many gated sets sharing ports (emulator), the shape where the gate used to take nothing: every
set goes to the classifier at once, the "deny TCP 0-1023 from a set" rules that only matter on
gated ports leave L_U, and the connectivity is the evaluator's. Named ports of other pods on
tcp/8080 (40 destinations, which made L_0 ragged there) no longer keep tcp/8080 in the ACL: the
gate's analysis cuts destination sets to what can reach the endpoint (classifier/source.py
`reaching`); the pod that is itself a named-port destination gets a gate of its own."""

from __future__ import annotations

import ipaddress

from tests.vpp.helpers import Target, make_driver, state_of, wkey
from tests.vpp.test_classifier import PODS, agrees_with_evaluator, established
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.model import Direction

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
        b.ipset("n:http", [*(f"10.71.0.{i + 1},tcp:8080" for i in range(40)), f"{PODS['ns/web1']},tcp:8080"],
                kind="ip_and_port"),
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
        assert driver._compiler.gated == 2, "one list spec, two gates: web1 is a named-port destination"
        compiler, catalog = driver._compiler, Catalog(state)
        lists = {p: compiler.program(catalog, compiler.endpoint(wkey(p), state.workload_endpoints[wkey(p)]).ep,
                                     Direction.INGRESS) for p in ("ns/web0", "ns/web1")}
        (web0, gate0), (web1, gate1) = lists["ns/web0"], lists["ns/web1"]
        assert gate0 is not None and gate1 is not None and gate0 != gate1
        assert len(gate0.sets) == SETS, "every set in one gate"
        assert not [r for r in web0.rules if _in_sets(str(r.src))], \
            "tcp/80, tcp/8080 and udp/8080 gated for web0 (no named port of its own); no deny left"
        assert {(6, 8080)} <= {(e.proto, e.dport) for e in gate0.gaps}
        assert {(r.proto, r.dport) for r in web1.rules if _in_sets(str(r.src))} <= {(6, (8080, 8080))}, \
            "web1: at most tcp/8080 (where its own named port allows every source) stays in the ACL"
        agrees_with_evaluator(sim_target, interfaces, state, ("ns/web0", "ns/web1"),
                              (("tcp", 80), ("tcp", 8080), ("udp", 8080), ("tcp", 22)))
        # the client is in c0 (allowed on tcp/80) and in c3 (denied tcp 0-1023 first): dropped on 80
        assert not established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "udp", 8080)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 8080)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "udp", 8080)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 8080)
        assert established(sim_target, interfaces, "ns/other", "ns/web1", "tcp", 8080), "its named port"
    finally:
        driver.close()
