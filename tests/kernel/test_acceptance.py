"""Issue 4 acceptance, with real packets: a node namespace with 3 pods on veths, the agent on the
iptables driver inside the node namespace, fed through felix-shim. Every probe is checked against
the expected outcome and against the reference evaluator; IPv4 and IPv6 run the same scenario."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.kernel.conftest import KernelAgent, wait_for
from tests.kernel.netlab import ALLOWED_WAIT, DENIED_WAIT, Lab, in_netns, nc_ok, servers, sh, tcp_ok
from tests.kernel.scenario import Probe, World
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.evaluate import host_endpoint_verdict
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState

pytestmark = pytest.mark.root
PORTS = (53, 80, 8080, 9090)


def restores(agent: KernelAgent) -> int:
    return sum(n for name, n in agent.calls().items() if name.endswith("-restore"))


def pod2(w: World, tiers: list[felix.TierInfo], state: str = "active", profiles: tuple[str, ...] = ("kns.default",)
         ) -> felix.ToDataplane:
    return b.workload("default/pod2", "cali2", ipv4=[w.net(2)] if w.family == 4 else [],
                      ipv6=[w.net(2)] if w.family == 6 else [], tiers=tiers, profiles=profiles, state=state)


def tier(name: str, ingress: list[str], default_action: str = "Deny") -> felix.TierInfo:
    return b.tier(name, ingress=ingress, default_action=default_action)


def icmp_rule(w: World, icmp_type: int, action: str = "allow") -> felix.Rule:
    proto = "icmp" if w.family == 4 else "icmpv6"
    return b.rule(action, protocol=proto, icmp_type=icmp_type)


@pytest.mark.parametrize("family", [4, 6])
def test_policy_scenarios_with_real_traffic(lab: Lab, agent: KernelAgent, family: int) -> None:
    w = World(lab, agent, family)
    p1, p3 = w.net(1), w.net(3)
    v4, v6 = family == 4, family == 6
    with servers(lab.pods[0].ns, PORTS, v6=True), servers(lab.pods[1].ns, PORTS, v6=True), \
            servers(lab.pods[2].ns, PORTS, v6=True):
        # Snapshot: pod1 isolated for ingress, pod3 profiles only, pod2 with a tier of policies.
        w.send(
            b.config({"IptablesRefreshInterval": "0"}),
            b.ipset("s:frontend", [p1]),
            b.ipset("s:np-http", [f"{w.ip(2)},tcp:8080"], kind="ip_and_port"),
            b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:frontend"])]),
            b.policy("named", inbound=[b.rule("allow", dst_named_port_ip_set_ids=["s:np-http"])]),
            b.policy("dns", inbound=[b.rule("allow", protocol="udp", dst_ports=[53], not_src_net=[p3])]),
            b.policy("isolate"),
            b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
            b.profile("kns.restricted", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])],
                      outbound=[b.rule("allow")]),
            b.workload("default/pod1", "cali1", tiers=[tier("default", ["isolate"])], profiles=["kns.default"],
                       ipv4=[p1] if v4 else [], ipv6=[p1] if v6 else []),
            pod2(w, [tier("default", ["web", "named", "dns"])]),
            b.workload("default/pod3", "cali3", profiles=["kns.restricted"], ipv4=[p3] if v4 else [],
                       ipv6=[p3] if v6 else []),
            b.in_sync(),
        )
        assert agent.state()["last_apply"]["ok"], agent.tail()
        w.check("ports, protocols, sets, named ports, negated nets, profiles only, replies vs reverse",
                Probe("tcp", 1, 2, 80), Probe("tcp", 3, 2, 80, False), Probe("tcp", 1, 2, 9090, False),
                Probe("tcp", 3, 2, 8080), Probe("udp", 3, 2, 8080, False),
                Probe("udp", 1, 2, 53), Probe("udp", 3, 2, 53, False),
                Probe("tcp", 2, 1, 80, False),  # reverse of the allowed pod1 → pod2:80 (whose replies pass)
                Probe("tcp", 2, 3, 80), Probe("tcp", 2, 3, 9090, False))
        assert nc_ok(lab.pods[0].ns, w.ip(2), 80, wait=int(ALLOWED_WAIT)) and not nc_ok(lab.pods[0].ns, w.ip(2), 9090)

        # An IP set member added, then removed: the effect comes without any iptables-restore.
        before = restores(agent)
        w.send(b.ipset_delta("s:frontend", added=[p3]))
        w.check("set member added", Probe("tcp", 3, 2, 80))
        w.send(b.ipset_delta("s:frontend", removed=[p3]))
        w.check("set member removed", Probe("tcp", 3, 2, 80, False))
        assert restores(agent) == before, "a member change must not rewrite iptables"

        # Pass into the next tier; a deny in an earlier tier wins over a later allow.
        w.send(b.policy("sec", inbound=[b.rule("pass", src_net=[p1]), b.rule("deny")]),
               pod2(w, [tier("security", ["sec"]), tier("default", ["web", "named", "dns"])]))
        w.check("tier pass", Probe("tcp", 1, 2, 80), Probe("tcp", 3, 2, 8080, False))

        # default_action Pass falls through to the next tier; anything else denies.
        w.send(b.policy("audit", inbound=[b.rule("log", protocol="tcp", dst_ports=[9999])]),
               pod2(w, [tier("audit", ["audit"], "Pass"), tier("default", ["web"])]))
        w.check("default action Pass", Probe("tcp", 1, 2, 80), Probe("tcp", 1, 2, 9090, False))
        w.send(pod2(w, [tier("audit", ["audit"], "Deny"), tier("default", ["web"])]))
        w.check("default action Deny", Probe("tcp", 1, 2, 80, False))

        # Negated ports and nets; ICMP type.
        w.send(b.policy("neg", inbound=[b.rule("allow", protocol="tcp", not_dst_ports=[9090, 80], not_src_net=[p3]),
                                        icmp_rule(w, 8 if family == 4 else 128)]),
               pod2(w, [tier("default", ["neg"])], profiles=()))
        w.check("negations, icmp echo allowed", Probe("tcp", 1, 2, 8080), Probe("tcp", 1, 2, 9090, False),
                Probe("tcp", 1, 2, 80, False), Probe("tcp", 3, 2, 8080, False), Probe("ping", 1, 2))
        w.send(b.policy("neg", inbound=[icmp_rule(w, 13 if family == 4 else 139)]))
        w.check("icmp other type only", Probe("ping", 1, 2, expect=False))

        # An endpoint in state "down" drops everything, both ways.
        w.send(b.policy("open", inbound=[b.rule("allow")]), pod2(w, [tier("default", ["open"])], state="down"))
        w.check("endpoint down", Probe("tcp", 1, 2, 80, False), Probe("tcp", 2, 3, 80, False))
        w.send(pod2(w, [tier("default", ["open"])]))
        w.check("endpoint up again", Probe("tcp", 1, 2, 80), Probe("tcp", 2, 3, 80))
        statuses = {e["workload_id"]: e["status"] for e in agent.state()["workload_endpoints"]}
        assert statuses == {"default/pod1": "up", "default/pod2": "up", "default/pod3": "up"}, statuses


def test_host_endpoint_deny_all_keeps_failsafe_ssh(lab: Lab, agent: KernelAgent) -> None:
    state = DataplaneState()

    def send(*msgs: felix.ToDataplane) -> None:
        for m in msgs:
            state.apply(m)
        agent.send(*msgs)

    with servers(lab.node, (22, 8080), v6=True):
        send(b.config({}), b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
             b.in_sync())
        assert tcp_ok(lab.client, "198.18.0.1", 8080, ALLOWED_WAIT), "no host endpoint: the host is not policed"
        # Deny everything except ICMPv6: like Felix, neighbour discovery to a host endpoint is
        # policy's business (only workload-to-host NDP is accepted before policy).
        send(b.policy("host-deny", inbound=[b.rule("allow", protocol="icmpv6"), b.rule("deny")],
                      outbound=[b.rule("allow", protocol="icmpv6"), b.rule("deny")]),
             b.host_endpoint("node-eth0", "eth0",
                             tiers=[b.tier("default", ingress=["host-deny"], egress=["host-deny"])]))
        assert agent.state()["host_endpoints"][0]["status"] == "up"
        for client, node in (("198.18.0.2", "198.18.0.1"), ("fd18::2", "fd18::1")):
            for port, expect in ((22, True), (8080, False)):
                pkt = Packet(6, ipaddress.ip_address(client), ipaddress.ip_address(node), 40000, port)
                oracle = host_endpoint_verdict(state, "node-eth0", "ingress", pkt).allowed
                seen = tcp_ok(lab.client, node, port, ALLOWED_WAIT if expect else DENIED_WAIT)
                assert seen == oracle == expect, f"{node}:{port}: kernel {seen}, evaluator {oracle}"


def test_routes_and_sysctls_are_programmed_and_cleaned(lab: Lab, agent: KernelAgent) -> None:
    agent.send(b.config({}), b.profile("p", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
               b.workload("default/pod1", "cali1", ipv4=["10.65.0.2/32"], ipv6=["fd65::2/128"], profiles=["p"]),
               b.in_sync())
    routes = sh("ip", "-n", lab.node, "route", "show", "proto", "81") + sh(
        "ip", "-n", lab.node, "-6", "route", "show", "proto", "81")
    assert "10.65.0.2 dev cali1" in routes and "fd65::2 dev cali1" in routes, routes
    proxy_arp = in_netns(lab.node, lambda: Path("/proc/sys/net/ipv4/conf/cali1/proxy_arp").read_text().strip())
    assert proxy_arp == "1"
    agent.send(b.workload_remove("default/pod1"))
    wait_for(lambda: "cali1" not in sh("ip", "-n", lab.node, "route", "show", "proto", "81"), what="route removed")
