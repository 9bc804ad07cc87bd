"""Large IP sets through the classifier: a member change is one API write, the connectivity is
the evaluator's (members, non-members, other ports, answers to the pod's own connections), and
chains follow VPP restarts and un-gating."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from tests.vpp.helpers import Target, make_driver, pod_spec, state_of, tables_but_guards, wkey
from vppagent.lab import builders as b
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet as PolicyPacket
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet

MEMBERS = [f"10.66.{i // 250}.{i % 250 + 1}" for i in range(600)]  # a 600-member set (threshold 500)
PODS = {"ns/web0": "10.65.0.2", "ns/web1": "10.65.0.3", "ns/client": "10.66.0.1", "ns/other": "10.65.9.9"}


def messages(members: list[str]) -> list:  # type: ignore[type-arg]
    web_tiers = [b.tier("default", ingress=["web"], namespace="ns")]
    return [
        b.config({}),
        b.ipset("s:clients", members, kind="ip"),
        b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80, (8000, 8099)], src_ip_set_ids=["s:clients"]),
            b.rule("allow", protocol="udp", dst_ports=[53])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        *[b.workload(p, f"cali{i}", ipv4=[f"{ip}/32"], tiers=web_tiers if p.startswith("ns/web") else [],
                     profiles=["open"]) for i, (p, ip) in enumerate(PODS.items())],
    ]


def established(target: Target, interfaces: dict[str, int], src: str, dst: str, proto: str, port: int) -> bool:
    sim = target.emulator
    with sim.state.lock:
        sim.state.acl.clear_sessions()
    return sim.connect((interfaces[src], PODS[src]), (interfaces[dst], PODS[dst]), proto, port).established


def agrees_with_evaluator(target: Target, interfaces: dict[str, int], state: DataplaneState, dsts: Sequence[str],
                          flows: Sequence[tuple[str, int]]) -> int:
    """Every other pod to each of `dsts` on each (proto, port) of `flows` connects exactly when the
    evaluator's ingress verdict allows it; returns how many were allowed."""
    allowed = 0
    for src in PODS:
        for dst in dsts:
            for proto, port in flows:
                if src == dst:
                    continue
                pkt = PolicyPacket(6 if proto == "tcp" else 17, ipaddress.ip_address(PODS[src]),
                                   ipaddress.ip_address(PODS[dst]), 40000, port)
                expected = verdict(state, wkey(dst), "ingress", pkt).allowed
                assert established(target, interfaces, src, dst, proto, port) == expected, (src, dst, proto, port)
                allowed += expected
    return allowed


def test_member_changes_are_one_write_and_connectivity_is_the_evaluators(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        state = state_of(messages(MEMBERS))
        assert driver.resync(state).ok
        status = driver.status()
        assert status["gated_lists"] == 1 and status["classifier_chains"] == 1, "an IPv4 chain (no IPv6 gate)"
        assert max(d.count for d in sim_target.our_acls().values()) < 10, "the 600 members are not in any ACL"
        agrees_with_evaluator(sim_target, interfaces, state, ("ns/web0", "ns/web1"),
                              (("tcp", 80), ("tcp", 8050), ("tcp", 81), ("udp", 53)))
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
        # the gated pod's own connection to a non-member: the answer (to its ephemeral port) passes
        assert established(sim_target, interfaces, "ns/web0", "ns/other", "tcp", 80)

        # one member in: one classifier session, nothing else
        new = state.copy()
        new.apply(b.ipset_delta("s:clients", added=["10.65.9.9"]))
        report = driver.apply(diff_states(state, new), new)
        assert report.ok and report.writes == 1
        assert established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
        # and out again: one write; an established flow of the removed member is cut at once
        sim = sim_target.emulator
        syn = Packet.make(PODS["ns/other"], PODS["ns/web0"], "tcp", 40000, 80)
        assert sim.evaluate(interfaces["ns/web0"], Direction.OUTPUT, syn).permitted  # session made
        state, new = new, new.copy()
        new.apply(b.ipset_delta("s:clients", removed=["10.65.9.9"]))
        report = driver.apply(diff_states(state, new), new)
        assert report.ok and report.writes == 1
        assert not sim.evaluate(interfaces["ns/web0"], Direction.OUTPUT, syn).permitted
    finally:
        driver.close()


def test_the_same_set_below_the_threshold_stays_in_acls_and_chains_go(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        state = state_of(messages(MEMBERS))
        driver.resync(state)
        table_ids = set(sim_target.raw.api.classify_table_ids().ids)
        assert table_ids
        small = state_of(messages(MEMBERS[:10]))
        report = driver.apply(diff_states(state, small), small)
        assert report.ok and driver.status()["classifier_chains"] == 0
        assert tables_but_guards(sim_target) == set(), "the chain's tables are deleted"
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
    finally:
        driver.close()


def test_chains_are_rebuilt_after_vpp_restarts(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap")
    try:
        state = state_of(messages(MEMBERS))
        driver.resync(state)
        for i, (pod, ip) in enumerate(PODS.items()):
            driver.attach_pod(pod_spec(pod, [f"{ip}/32"], host_ifname=f"cali{i}"))
        sim_target.emulator.restart()
        assert driver.resync(state).ok
        by_tag = {i.tag: i.sw_if_index for i in sim_target.emulator.state.interfaces.all()}
        interfaces = {p: by_tag[f"vpa1:wl:k8s/{p}/eth0"] for p in PODS}
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
        assert driver.resync(state).writes == 0
    finally:
        driver.close()

