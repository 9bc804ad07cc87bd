"""Several IP sets in one gate (emulator): overlapping regions and a deny between them, the
connectivity the evaluator's, a member change as many session writes as the member has admit
entries, and the chain adopted after an agent restart with nothing written."""

from __future__ import annotations

from tests.vpp.helpers import Target, make_driver, state_of
from tests.vpp.test_classifier import PODS, agrees_with_evaluator, established
from tests.vpp.test_classifier_adopt import restarted, tables
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState

G1 = [f"10.66.{i // 250}.{i % 250 + 1}" for i in range(600)]  # ns/client (10.66.0.1) is in g1
G2 = [f"10.67.{i // 250}.{i % 250 + 1}" for i in range(600)] + ["10.66.0.1"]  # and in g2, inside the denied /24


def messages(g2: list[str]) -> list:  # type: ignore[type-arg]
    web_tiers = [b.tier("default", ingress=["web"], namespace="ns")]
    return [
        b.config({}),
        b.ipset("g1", G1, kind="ip"),
        b.ipset("g2", g2, kind="ip"),
        b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["g1"]),
            b.rule("deny", protocol="tcp", dst_ports=[22, 80, 443], src_net=["10.66.0.0/24"]),
            b.rule("allow", protocol="tcp", dst_ports=[22, 80], src_ip_set_ids=["g2"])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        *[b.workload(p, f"cali{i}", ipv4=[f"{ip}/32"], tiers=web_tiers if p.startswith("ns/web") else [],
                     profiles=["open"]) for i, (p, ip) in enumerate(PODS.items())],
    ]


def check(target: Target, interfaces: dict[str, int], state: DataplaneState) -> int:
    return agrees_with_evaluator(target, interfaces, state, ("ns/web0",),
                                 (("tcp", 22), ("tcp", 80), ("tcp", 443), ("udp", 80)))


def test_two_overlapping_sets_in_one_gate(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        state = state_of(messages(G2))
        assert driver.resync(state).ok
        status = driver.status()
        assert status["gated_lists"] == 1 and driver._compiler.multi_set_gates == 1
        assert max(d.count for d in sim_target.our_acls().values()) < 20, "no member of either set in an ACL"
        assert check(sim_target, interfaces, state) >= 1
        # ns/client is in both sets, and in the denied /24: admitted on 80 by g1's rule, not on 22
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 22)

        # ns/other joins g2: admitted on 22 and 80 (two admit sessions), nothing else written
        new = state.copy()
        new.apply(b.ipset_delta("g2", added=["10.65.9.9"]))
        report = driver.apply(diff_states(state, new), new)
        assert report.ok and report.writes == 2, report
        assert established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 22)
        check(sim_target, interfaces, new)

        # an agent restart against the same VPP: the chain is adopted, nothing written
        before = tables(sim_target)
        driver = restarted(driver, sim_target)
        report = driver.resync(new)
        assert report.ok and report.writes == 0, report
        assert tables(sim_target) == before
        check(sim_target, interfaces, new)
    finally:
        driver.close()
