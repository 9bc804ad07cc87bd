"""Faults: VPP restarts (a poll reconnects and resyncs), stalled replies (bounded waits, no
leaked threads), refused requests (that endpoint "error", the others up), a connection dropped in
the middle of a dump, and a VPP that comes back incompatible."""

from __future__ import annotations

import threading
import time

from tests.agentproc import wait_for
from tests.vpp.helpers import FakePlumbing, Target, make_driver, pod_spec, state_of
from vppagent.config import AgentConfig
from vppagent.drivers.base import ApplyReport
from vppagent.lab import builders as b
from vppagent.server.core import AgentCore
from vppagent.state.diff import diff_states
from vppagent.vppsim import Direction, Packet

ALLOW_WEB = [b.config({}), b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])],
                                     outbound=[b.rule("allow")])]


def agent_threads() -> set[threading.Thread]:  # compared by count: reconnecting makes new ones
    """Threads that are not the emulator's (whose stalled handlers sleep on their own)."""
    return {t for t in threading.enumerate() if not t.name.startswith("vppsim")}


def web_allowed(target: Target, tag_workload: str, addr: str) -> bool:
    sim = target.emulator
    pod = next(i for i in sim.state.interfaces.all() if i.tag.endswith(tag_workload + "/eth0"))
    return sim.evaluate(pod.sw_if_index, Direction.OUTPUT, Packet.make("10.65.9.9", addr, "tcp", 40000, 80)).permitted


def test_vpp_restart_mid_run_is_detected_reconnected_and_resynced(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap", keepalive=0.05, request_timeout=0.5)
    try:
        state = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"]),
                          b.workload("ns/b", "cali2", ipv4=["10.65.0.3/32"], profiles=["web"])])
        driver.resync(state)
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"], host_ifname="calia"))
        driver.attach_pod(pod_spec("ns/b", ["10.65.0.3/32"], host_ifname="calib"))
        assert web_allowed(sim_target, "ns/a", "10.65.0.2")
        acls_before = len(sim_target.our_acls())
        sim_target.emulator.restart(downtime=0.3)  # everything in VPP is gone for a while
        wait_for(lambda: driver.poll().ok and driver.status()["reconnects"] >= 1, what="reconnect and resync")
        assert web_allowed(sim_target, "ns/a", "10.65.0.2") and web_allowed(sim_target, "ns/b", "10.65.0.3")
        assert len(sim_target.our_acls()) == acls_before
        assert {"10.65.0.2/32", "10.65.0.3/32"} <= set(sim_target.routes())
        assert driver.resync(state).writes == 0, "what was restored is exactly the state"
    finally:
        driver.close()


def test_stalled_replies_time_out_boundedly_and_leak_no_threads(sim_target: Target) -> None:
    driver = make_driver(sim_target, request_timeout=0.3)
    try:
        sim_target.pod("ns/a")
        state = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"])])
        baseline = agent_threads()
        # One stalled reply (VPP did the work, the answer is late): the request times out, the
        # driver reconnects, reads VPP back and finds the write done.
        sim_target.emulator.faults.stall(1.0, message="acl_add_replace", times=1)
        start = time.monotonic()
        report = driver.resync(state)
        assert report.ok and not report.failed and time.monotonic() - start < 1.0
        # VPP stops answering at all: each resync gives up within about two timeouts and says so
        sim_target.emulator.faults.stall(2.0, times=None)
        for _ in range(4):
            start = time.monotonic()
            report = driver.resync(state)
            assert not report.ok and any(w in (report.error or "") for w in ("read failed", "timed out")), report
            assert time.monotonic() - start < 2 * 0.3 + 0.6
        sim_target.emulator.faults.clear()
        wait_for(lambda: len(agent_threads()) <= len(baseline), timeout=5, what="threads beyond the baseline to end")
        assert driver.resync(state).ok  # connected again (the transport reads on the caller's thread)
        assert len(agent_threads()) <= len(baseline), "reconnecting left no reader or queue threads behind"
    finally:
        driver.close()


def test_a_connection_dropped_mid_dump_is_retried_on_a_fresh_one(sim_target: Target) -> None:
    driver = make_driver(sim_target)
    try:
        sim_target.pod("ns/a")
        state = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"])])
        driver.resync(state)
        sim_target.emulator.faults.drop_mid_dump("sw_interface_dump", after_details=1)
        report = driver.resync(state)
        assert report.ok and report.writes == 0
    finally:
        driver.close()


def test_vpp_coming_back_incompatible_is_reported_not_programmed(sim_target: Target) -> None:
    driver = make_driver(sim_target)
    try:
        state = state_of(ALLOW_WEB)
        driver.resync(state)
        sim_target.emulator.faults.alter_crc("acl_add_replace", "12345678")
        sim_target.emulator.restart()
        report = driver.resync(state)
        assert not report.ok and "CRC differs for acl_add_replace (VPP 12345678" in (report.error or "")
        assert driver.status()["connected"] is False
    finally:
        driver.close()


def test_a_refused_request_fails_that_endpoint_only_and_is_retried(sim_target: Target) -> None:
    driver = make_driver(sim_target)
    core = AgentCore(AgentConfig.model_validate({"driver": "vpp", "batch_window_ms": 1}), driver)
    core.start()
    try:
        for pod in ("ns/a", "ns/b"):
            sim_target.pod(pod)
        generation = core.open_stream().generation
        for m in [*ALLOW_WEB, b.profile("db", inbound=[b.rule("allow", protocol="tcp", dst_ports=[5432])]),
                  b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"]), b.in_sync()]:
            core.submit(generation, m)
        wait_for(lambda: _statuses(core) == {"ns/a": "up"}, what="ns/a up")
        # ns/b's ingress list is new content: VPP refuses the ACL once
        sim_target.emulator.faults.reject("acl_add_replace", -7, times=1)
        core.submit(generation, b.workload("ns/b", "cali2", ipv4=["10.65.0.3/32"], profiles=["db"]))
        wait_for(lambda: _statuses(core).get("ns/b") == "error", what="ns/b in error")
        report = core.state_report()
        errors = {r["workload_id"]: r["error"] for r in report["workload_endpoints"]}
        assert "VPP refused acl_add_replace" in errors["ns/b"] and "retval -7" in errors["ns/b"]
        assert _statuses(core)["ns/a"] == "up" and web_allowed(sim_target, "ns/a", "10.65.0.2")
        # the agent retries failed objects: VPP accepts now
        wait_for(lambda: _statuses(core) == {"ns/a": "up", "ns/b": "up"}, what="ns/b retried and up")
    finally:
        core.stop()


def _statuses(core: AgentCore) -> dict[str, str]:
    return {r["workload_id"]: r["status"] for r in core.state_report()["workload_endpoints"]}


def test_apply_with_a_diff_only_touches_what_changed(sim_target: Target) -> None:
    driver = make_driver(sim_target, plumbing=FakePlumbing())
    try:
        sim_target.pod("ns/a")
        old = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"])])
        driver.resync(old)
        new = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"]),
                        b.route("10.65.64.0/26", 1, node="node2", node_ip="198.18.0.2")])
        report = driver.apply(diff_states(old, new), new)
        assert report.writes == 1 and "10.65.64.0/26" in sim_target.routes()
    finally:
        driver.close()


def test_polls_report_the_outage_then_the_resync(sim_target: Target) -> None:
    """The driver owns no thread: the agent polls it when a report's `next_run` says. While VPP
    is gone a poll says it is unreachable (asking for the next poll sooner than `max_backoff`);
    the poll that finds it back resyncs, counts a reconnect, and reports nothing failed."""
    driver = make_driver(sim_target, pod_interface="tap", keepalive=0.05, request_timeout=0.5, max_backoff=0.4)
    try:
        state = state_of([*ALLOW_WEB, b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"])])
        first = driver.resync(state)
        assert first.ok and first.next_run == 0.05
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"], host_ifname="calia"))
        assert not any(t.name == "vpp-monitor" for t in threading.enumerate())
        sim_target.emulator.restart(downtime=0.5)
        reports: list[ApplyReport] = []
        wait_for(lambda: reports.append(driver.poll()) or (reports[-1].ok and driver.status()["reconnects"] >= 1),
                 what="a poll that reconnects")
        down = [r for r in reports if not r.ok]
        assert down and all(r.unreachable and r.next_run is not None and r.next_run <= 0.4 for r in down), down
        assert reports[-1].failed == {} and reports[-1].next_run == 0.05
        assert web_allowed(sim_target, "ns/a", "10.65.0.2")
    finally:
        driver.close()
