"""Issue 13 against the VPP driver and the emulator, through the agent's core: findings 1-3 and
the reconnect counter."""

from __future__ import annotations

import time

from tests.agentproc import wait_for
from tests.status.harness import start_core
from tests.vpp.helpers import Target, make_driver
from vppagent.lab import builders as b

WEB = b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])], outbound=[b.rule("allow")])


def policy(ports: int) -> object:
    return b.policy("p", inbound=[b.rule("allow", protocol="tcp", dst_ports=[1000 + i]) for i in range(ports)])


def endpoint(workload: str, iface: str, ip: str) -> object:
    return b.workload(workload, iface, ipv4=[ip], tiers=[b.tier("default", ingress=["p"])], profiles=["web"])


def bound_rule_counts(target: Target) -> dict[int, tuple[int, ...]]:
    acls = target.our_acls()
    return {ifx: tuple(len(acls[a].r) for a in (*i, *o) if a in acls) for ifx, (i, o) in target.bindings().items()}


def test_one_bad_endpoint_does_not_stop_the_vpp_driver(sim_target: Target) -> None:
    """Finding 1: `10.65.0.300/32` fails that endpoint only; the others' changes are programmed."""
    sim_target.pod("ns/a")
    core, feed = start_core(make_driver(sim_target))
    try:
        feed.send(b.config({}), WEB, policy(1), endpoint("ns/a", "cali1", "10.65.0.2/32"),
                  endpoint("ns/bad", "cali9", "10.65.0.300/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/a": "up", "ns/bad": "error"}, what="ns/a up, ns/bad error")
        errors = {r["workload_id"]: r["error"] for r in core.state_report()["workload_endpoints"]}
        assert "10.65.0.300/32" in errors["ns/bad"] and "ns/bad" in errors["ns/bad"] and errors["ns/a"] is None
        before = bound_rule_counts(sim_target)
        feed.send(policy(3))
        wait_for(lambda: bound_rule_counts(sim_target) != before, what="ns/a's policy change programmed")
        assert core.state_report()["last_apply"]["ok"] is True
        assert feed.statuses() == {"ns/a": "up", "ns/bad": "error"}
    finally:
        core.stop()


def test_a_policy_past_the_rule_limit_stays_in_error(sim_target: Target) -> None:
    """Finding 2: `--rule-limit`: the endpoint keeps its old ACL and stays "error" across retries."""
    sim_target.pod("ns/a")
    core, feed = start_core(make_driver(sim_target, rule_limit=20), retry_first=0.2)
    try:
        feed.send(b.config({}), WEB, policy(2), endpoint("ns/a", "cali1", "10.65.0.2/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/a": "up"}, what="ns/a up")
        before = bound_rule_counts(sim_target)
        applies = core.state_report()["driver_status"]["applies"]
        feed.send(policy(40))
        wait_for(lambda: feed.statuses() == {"ns/a": "error"}, what="ns/a error")
        wait_for(lambda: core.state_report()["driver_status"]["applies"] >= applies + 4, what="three retries")
        assert feed.statuses() == {"ns/a": "error"} and ("ns/a", "up") not in feed.sent[1:], feed.sent
        assert "exceed the limit of 20" in core.state_report()["workload_endpoints"][0]["error"]
        assert bound_rule_counts(sim_target) == before, "the old ACL stays bound"
        feed.send(policy(4))
        wait_for(lambda: feed.statuses() == {"ns/a": "up"}, what="ns/a up with a policy that fits")
    finally:
        core.stop()


def test_statuses_stay_error_while_vpp_is_gone(sim_target: Target) -> None:
    """Finding 3: with VPP's socket gone, deltas do not make statuses flap; the state report says
    first that VPP is unreachable; when VPP is back the agent's poll resyncs and counts a reconnect."""
    from vppagent.cli import format_state

    for pod in ("ns/a", "ns/b"):
        sim_target.pod(pod)
    driver = make_driver(sim_target, keepalive=0.1, max_backoff=0.5, request_timeout=0.5)
    core, feed = start_core(driver, retry_first=0.2)
    try:
        feed.send(b.config({}), WEB, policy(1), endpoint("ns/a", "cali1", "10.65.0.2/32"),
                  endpoint("ns/b", "cali2", "10.65.0.3/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/a": "up", "ns/b": "up"}, what="both up")
        sim_target.emulator.restart(downtime=3.0)
        for i in range(8):
            feed.send(endpoint("ns/b", "cali2", f"10.65.0.{10 + i}/32"))
            time.sleep(0.2)
        wait_for(lambda: feed.statuses() == {"ns/a": "error", "ns/b": "error"}, what="both error")
        report = core.state_report()
        assert report["dataplane"]["reachable"] is False, report["dataplane"]
        assert format_state(report).splitlines()[0].startswith("dataplane  vpp unreachable since")
        # VPP is back empty: the pod interfaces were made by this test, not by a CNI Add the driver
        # could redo, so nothing can hold the endpoints' policy: "down", not "up".
        wait_for(lambda: feed.statuses() == {"ns/a": "down", "ns/b": "down"}, timeout=20, what="both down")
        for pod in ("ns/a", "ns/b"):
            sim_target.pod(pod)
        feed.send(endpoint("ns/a", "cali1", "10.65.0.2/32"), endpoint("ns/b", "cali2", "10.65.0.20/32"))
        wait_for(lambda: feed.statuses() == {"ns/a": "up", "ns/b": "up"}, timeout=20, what="both up again")
        down = feed.sent.index(("ns/a", "error"))
        flips = [s for s in feed.sent[down:] if s[1] == "up"]
        assert sorted(flips) == [("ns/a", "up"), ("ns/b", "up")], f"one way back up, no flapping: {feed.sent}"
        report = core.state_report()
        assert report["driver_status"]["reconnects"] >= 1 and report["dataplane"]["reachable"] is True
    finally:
        core.stop()


def test_a_reconnect_by_an_apply_is_counted(sim_target: Target) -> None:
    """Finding 7: `driver_status.reconnects` counts every reconnect, also one an apply makes."""
    sim_target.pod("ns/a")
    core, feed = start_core(make_driver(sim_target, keepalive=60))
    try:
        feed.send(b.config({}), WEB, policy(1), endpoint("ns/a", "cali1", "10.65.0.2/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/a": "up"}, what="ns/a up")
        assert core.state_report()["driver_status"]["reconnects"] == 0
        sim_target.emulator.restart()
        feed.send(policy(2))
        wait_for(lambda: core.state_report()["driver_status"]["reconnects"] == 1, what="one reconnect counted")
    finally:
        core.stop()


def test_state_before_the_first_apply_says_vpp_is_gone(sim_target: Target) -> None:
    """Finding 7: before Felix's snapshot, the human `state` shows that VPP does not answer."""
    from vppagent.cli import format_state

    core, _ = start_core(make_driver(sim_target, keepalive=0.1, max_backoff=0.3, request_timeout=0.5))
    try:
        wait_for(lambda: core.state_report()["dataplane"]["reachable"] is True, what="VPP answers")
        sim_target.emulator.restart(downtime=5.0)
        wait_for(lambda: core.state_report()["dataplane"]["reachable"] is False, what="VPP gone")
        first = format_state(core.state_report()).splitlines()[0]
        assert first.startswith("dataplane  vpp unreachable since") and "None" not in first, first
        wait_for(lambda: core.state_report()["dataplane"]["reachable"] is True, timeout=20, what="VPP back")
    finally:
        core.stop()


def test_an_endpoint_without_a_pod_interface_is_down_until_it_has_one(sim_target: Target) -> None:
    """Nothing in VPP can hold the policy of a pod that is not attached here: "down" (as Felix says of an
    endpoint whose interface is missing), steadily across polls; "up" once its interface exists."""
    sim_target.pod("ns/a")
    core, feed = start_core(make_driver(sim_target))
    try:
        late = endpoint("ns/late", "cali2", "10.65.0.3/32")
        feed.send(b.config({}), WEB, policy(1), endpoint("ns/a", "cali1", "10.65.0.2/32"), late, b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/a": "up", "ns/late": "down"}, what="ns/a up, ns/late down")
        polls = core.state_report()["driver_status"]["polls"]
        wait_for(lambda: core.state_report()["driver_status"]["polls"] >= polls + 2, what="two keepalive polls")
        assert feed.statuses() == {"ns/a": "up", "ns/late": "down"}
        sim_target.pod("ns/late")
        feed.send(endpoint("ns/late", "cali2", "10.65.0.4/32"))  # Felix's next update of it finds the interface
        wait_for(lambda: feed.statuses() == {"ns/a": "up", "ns/late": "up"}, what="ns/late up once attached")
    finally:
        core.stop()
