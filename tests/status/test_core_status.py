"""Issue 13: a status is "up" only when the dataplane holds what the agent computed (core side).

Each test names the finding it pins. The drivers are the dry-run (which compiles every endpoint
as the policy core does) and a scripted dry-run whose reports can be forced.
"""

from __future__ import annotations

import itertools
import logging
import time

import pytest

from tests.agentproc import wait_for
from tests.status.harness import ScriptedDriver, start_core
from vppagent.cli import format_state
from vppagent.drivers.base import ApplyReport
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.lab import builders as b
from vppagent.state.model import Kind, WorkloadKey

POD1 = WorkloadKey("k8s", "ns/pod1", "eth0")


def snapshot(pod1_ipv4: str = "10.0.0.5/32") -> list:
    return [
        b.ipset("s:web", ["10.0.0.1/32"]),
        b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:web"])]),
        b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/pod1", "cali1", ipv4=[pod1_ipv4], tiers=[b.tier("default", ingress=["allow-web"])],
                   profiles=["kns.ns"]),
        b.workload("ns/pod2", "cali2", ipv4=["10.0.0.6/32"], profiles=["kns.ns"]),
    ]


def wide_policy(ports: int) -> object:
    """allow-web with one rule per port: past a small rule limit, it cannot be compiled."""
    return b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[p], src_ip_set_ids=["s:web"])
                                          for p in range(1000, 1000 + ports)])


def test_one_bad_endpoint_is_that_endpoints_error_only() -> None:
    """Finding 1 (dry-run side): an unparseable address fails its endpoint; the others are
    programmed and later changes reach them."""
    driver = DryRunDriver()
    core, feed = start_core(driver)
    try:
        feed.send(*snapshot(pod1_ipv4="10.65.0.300/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}, what="pod1 error, pod2 up")
        row = next(r for r in core.state_report()["workload_endpoints"] if r["workload_id"] == "ns/pod1")
        assert "10.65.0.300/32" in row["error"] and "ns/pod1" in row["error"]
        pod2 = WorkloadKey("k8s", "ns/pod2", "eth0")
        feed.send(b.workload("ns/pod2", "cali2", ipv4=["10.0.0.7/32"], profiles=["kns.ns"]))
        wait_for(lambda: (Kind.WORKLOAD_ENDPOINT, pod2) in driver.lists
                 and driver.held.workload_endpoints[pod2].ipv4_nets[0] == "10.0.0.7/32",
                 what="pod2's change programmed")
        feed.send(b.workload("ns/pod1", "cali1", ipv4=["10.65.0.30/32"],
                             tiers=[b.tier("default", ingress=["allow-web"])], profiles=["kns.ns"]))
        wait_for(lambda: feed.statuses()["ns/pod1"] == "up", what="pod1 fixed")
    finally:
        core.stop()


def test_a_retry_with_nothing_to_do_keeps_the_error() -> None:
    """Finding 2: a policy change past the rule limit fails the endpoint; the retry, whose diff is
    empty, must not turn it "up" while the dataplane still holds the old lists."""
    driver = ScriptedDriver(rule_limit=20)
    core, feed = start_core(driver, retry_first=0.2)
    try:
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up")
        old_lists = driver.lists[(Kind.WORKLOAD_ENDPOINT, POD1)]
        feed.send(wide_policy(30))
        wait_for(lambda: feed.statuses()["ns/pod1"] == "error", what="pod1 error")
        calls = len(driver.calls)
        wait_for(lambda: len(driver.calls) >= calls + 3, what="three retries")
        assert feed.statuses()["ns/pod1"] == "error"
        assert ("ns/pod1", "up") not in feed.sent[feed.sent.index(("ns/pod1", "error")):], feed.sent
        assert driver.lists[(Kind.WORKLOAD_ENDPOINT, POD1)] is old_lists, "fail closed: the old lists stay"
        assert "rules exceed the limit of 20" in core.state_report()["workload_endpoints"][0]["error"]
        feed.send(wide_policy(5))
        wait_for(lambda: feed.statuses()["ns/pod1"] == "up", what="pod1 up after a policy that fits")
    finally:
        core.stop()


def test_unreachable_dataplane_puts_every_endpoint_in_error_steadily() -> None:
    """Finding 3: with the dataplane gone, deltas for one endpoint must not turn the others "up"."""
    driver = ScriptedDriver()
    core, feed = start_core(driver, retry_first=0.1)
    try:
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up")
        driver.outage = "VPP: cannot connect to /run/vpp/api.sock"
        for i in range(6):
            feed.send(b.workload("ns/pod2", "cali2", ipv4=[f"10.0.0.{10 + i}/32"], profiles=["kns.ns"]))
            time.sleep(0.15)
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "error"}, what="both error")
        first_error = feed.sent.index(("ns/pod1", "error"))
        assert [s for s in feed.sent[first_error:] if s[1] == "up"] == [], feed.sent
        report = core.state_report()
        assert report["dataplane"]["reachable"] is False and "api.sock" in report["dataplane"]["reason"]
        errors = {r["error"] for r in report["workload_endpoints"]}
        assert len(errors) == 1 and "unreachable since" in errors.pop(), "one steady reason for all"
        assert report["endpoints"] == {"up": 0, "down": 0, "error": 2, "waiting": 0}
        driver.outage = None
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up again")
        assert core.state_report()["dataplane"]["reachable"] is True
    finally:
        core.stop()


def test_failures_are_retried_with_backoff_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Failed work is retried at growing intervals, and logged once per change of reason."""
    driver = ScriptedDriver()
    core, feed = start_core(driver, retry_first=0.1, retry_max=0.4)
    try:
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up")
        with caplog.at_level(logging.WARNING, logger="vppagent.server"):
            driver.extra_failed = {(Kind.WORKLOAD_ENDPOINT, POD1): "no room for the ACL"}
            start = len(driver.calls)
            feed.send(b.workload("ns/pod2", "cali2", ipv4=["10.0.0.9/32"], profiles=["kns.ns"]))
            wait_for(lambda: len(driver.calls) >= start + 6, what="five retries")
        times = [t for _, t in driver.calls[start:start + 6]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] < gaps[2] and gaps[-1] >= 0.35, gaps
        logged = [r for r in caplog.records if "no room for the ACL" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}
        driver.extra_failed = {}
        wait_for(lambda: feed.statuses()["ns/pod1"] == "up", what="pod1 up once the retry succeeds")
        stop = len(driver.calls)
        time.sleep(0.6)
        assert len(driver.calls) == stop, "no retries once nothing fails"
    finally:
        core.stop()


def test_a_failed_policy_fails_the_endpoints_that_use_it() -> None:
    """A driver that fails a policy (the kernel driver renders it as a drop chain) leaves its
    endpoints not as computed: they report the policy's error."""
    driver = ScriptedDriver()
    core, feed = start_core(driver)
    try:
        from vppagent.state.model import PolicyKey

        driver.extra_failed = {(Kind.POLICY, PolicyKey("allow-web", "", "")): "cannot render"}
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}, what="pod1 error via its policy")
        error = core.state_report()["workload_endpoints"][0]["error"]
        assert "allow-web" in error and "cannot render" in error
    finally:
        core.stop()


def test_swap_keeps_endpoints_already_in_error() -> None:
    """Finding 5: a swap is refused only when the new driver fails what the old one programmed."""
    core, feed = start_core(DryRunDriver(programs_dataplane=True), factory=lambda name: DryRunDriver(name=name))
    try:
        feed.send(*snapshot(pod1_ipv4="10.65.0.300/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}, what="pod1 error")
        ok, error, previous, _ = core.set_driver("other")
        assert ok and previous == "dry-run", error
        assert core.state_report()["driver"] == "other"
        assert {r["workload_id"]: r["status"] for r in core.state_report()["workload_endpoints"]} == {
            "ns/pod1": "error", "ns/pod2": "up"}
    finally:
        core.stop()


def test_swap_is_refused_when_the_new_driver_fails_an_endpoint_that_was_up() -> None:
    class Picky(ScriptedDriver):
        pass

    def factory(name: str) -> ScriptedDriver:
        d = Picky(name=name)
        d.extra_failed = {(Kind.WORKLOAD_ENDPOINT, WorkloadKey("k8s", "ns/pod2", "eth0")): "no room"}
        return d

    core, feed = start_core(DryRunDriver(programs_dataplane=True), factory=factory)  # as a real driver
    try:
        feed.send(*snapshot(pod1_ipv4="10.65.0.300/32"), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}, what="pod1 error")
        ok, error, _, _ = core.set_driver("picky")
        assert not ok and "ns/pod2" in error and "no room" in error and "ns/pod1" not in error
        assert core.state_report()["driver"] == "dry-run"
    finally:
        core.stop()


def test_the_driver_is_polled_when_it_asks_and_statuses_follow() -> None:
    """Issue 12 item 5: a driver's timed work runs on the agent's worker, at `next_run`."""
    driver = ScriptedDriver()
    driver.next_run = 0.1
    core, feed = start_core(driver)
    try:
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up")
        polls = driver.polls
        wait_for(lambda: driver.polls >= polls + 3, what="polls at next_run")
        driver.outage = "VPP: connection lost"
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "error"}, what="a poll's outage")
        driver.outage = None
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="a poll's recovery")
    finally:
        core.stop()


def test_state_shows_the_dataplane_first_even_before_the_first_apply() -> None:
    """`vppagent state` first says whether the dataplane answers and how many endpoints are up,
    in error or waiting; before any apply it says so instead of `last apply None s, ok=None`."""
    driver = ScriptedDriver()
    driver.outage = "VPP: API socket /run/vpp/api.sock does not exist"
    core, feed = start_core(driver)
    try:
        wait_for(lambda: core.state_report()["dataplane"]["reachable"] is False, what="first poll")
        text = format_state(core.state_report())
        first = text.splitlines()[0]
        assert "unreachable" in first and "api.sock does not exist" in first, text
        assert "None" not in text and "never" in text, text
        driver.outage = None
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up")
        lines = format_state(core.state_report()).splitlines()
        assert lines[0].startswith("dataplane") and "reachable" in lines[0] and "unreachable" not in lines[0]
        assert lines[1] == "endpoints  2 up, 0 in error, 0 waiting, 0 down", lines
    finally:
        core.stop()


def test_report_is_complete_so_a_background_poll_can_clear_errors() -> None:
    """A report lists every failure: an empty `failed` in a poll's report clears old ones."""
    driver = ScriptedDriver()
    core, feed = start_core(driver, retry_first=30)
    try:
        driver.extra_failed = {(Kind.WORKLOAD_ENDPOINT, POD1): "VPP restarted"}
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses().get("ns/pod1") == "error", what="pod1 error")
        driver.extra_failed = {}
        with core.lock:
            core._take_report(ApplyReport(), core.health.given)
        assert feed.statuses()["ns/pod1"] == "up"
    finally:
        core.stop()


def test_endpoint_faults_follow_ip_sets_policies_and_profiles() -> None:
    from vppagent.server.status import endpoint_faults
    from vppagent.state.model import DataplaneState, PolicyKey

    state = DataplaneState()
    for msg in snapshot():
        state.apply(msg)
    pod2 = (Kind.WORKLOAD_ENDPOINT, WorkloadKey("k8s", "ns/pod2", "eth0"))
    assert endpoint_faults(state, {}) == {}
    by_set = endpoint_faults(state, {(Kind.IPSET, "s:web"): "ipset refused"})
    assert list(by_set) == [(Kind.WORKLOAD_ENDPOINT, POD1)] and "s:web" in by_set[(Kind.WORKLOAD_ENDPOINT, POD1)]
    by_profile = endpoint_faults(state, {(Kind.PROFILE, "kns.ns"): "bad"})
    assert set(by_profile) == {(Kind.WORKLOAD_ENDPOINT, POD1), pod2}
    by_policy = endpoint_faults(state, {(Kind.POLICY, PolicyKey("allow-web", "", "")): "bad",
                                        pod2: "own reason"})
    assert by_policy[pod2] == "own reason" and "allow-web" in by_policy[(Kind.WORKLOAD_ENDPOINT, POD1)]


def test_a_swap_away_from_the_dry_run_has_nothing_to_lose() -> None:
    """Finding 5 as seen: `driver set dry-run`, then back to a driver that fails one endpoint the
    dry run accepted (say, a bad interface name): the swap stands, that endpoint is "error"."""
    def factory(name: str) -> ScriptedDriver:
        d = ScriptedDriver(name=name)
        d.extra_failed = {(Kind.WORKLOAD_ENDPOINT, POD1): "interface name cali$1 is not valid"}
        return d

    core, feed = start_core(DryRunDriver(), factory=factory)
    try:
        feed.send(*snapshot(), b.in_sync())
        wait_for(lambda: feed.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="both up in the dry run")
        ok, error, _, _ = core.set_driver("iptables")
        assert ok, error
        wait_for(lambda: feed.statuses() == {"ns/pod1": "error", "ns/pod2": "up"}, what="pod1 error after the swap")
    finally:
        core.stop()
