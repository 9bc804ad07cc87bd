"""ACL writes and binds go out as pipelines, one per step of the plan (acl/apply.py), and keep
each object's own outcome: an ACL or a bind VPP refuses inside a pipeline fails the endpoints it
was for (closed: they keep what they had), the requests after it in the pipeline are applied;
and the steps stay in make-before-break order (a mover is bound to its new ACL, answered, before
the ACL it leaves is replaced in place)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.api.connection import ApiRequest
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.vppsim import Direction, Packet

PODS = {f"ns/p{i}": f"10.65.0.{i + 2}" for i in range(6)}
PEER = "10.65.9.9"


def profiles() -> list[felix.ToDataplane]:
    """One profile per pod: each allows its own TCP port in (so every ingress list differs)."""
    return [b.config({}), *(b.profile(f"only{i}", inbound=[b.rule("allow", protocol="tcp", dst_ports=[8000 + i])],
                                      outbound=[b.rule("allow")]) for i in range(len(PODS)))]


def endpoints(profile_of: dict[str, str] | None = None) -> list[felix.ToDataplane]:
    profile_of = profile_of or {}
    return [b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"], profiles=[profile_of.get(pod, f"only{i}")])
            for i, (pod, ip) in enumerate(PODS.items())]


def admits(target: Target, pods: dict[str, int], pod: str, port: int) -> bool:
    """A TCP SYN from PEER to the pod on `port` passes its interface's output (its ingress list)."""
    return target.emulator.evaluate(pods[pod], Direction.OUTPUT,
                                    Packet.make(PEER, PODS[pod], "tcp", 40000, port)).permitted


def failed_pods(report: Any) -> set[str]:
    return {key.workload_id for _, key in report.failed}


class Batches:
    """Every pipeline the driver sends (its messages and fields), in order."""

    def __init__(self, driver: VppDriver) -> None:
        self.sent: list[list[ApiRequest]] = []
        pipeline = driver.conn.pipeline

        def recording(requests: Sequence[ApiRequest]) -> list[Any]:
            self.sent.append(list(requests))
            return pipeline(requests)

        driver.conn.pipeline = recording  # type: ignore[method-assign]

    def of(self, message: str) -> list[list[ApiRequest]]:
        return [batch for batch in self.sent if any(r.message == message for r in batch)]


@pytest.fixture
def pods(sim_target: Target) -> dict[str, int]:
    return {pod: sim_target.pod(pod) for pod in PODS}


def test_a_cold_applys_acls_and_binds_go_out_as_one_pipeline_each(sim_target: Target, pods: dict[str, int]) -> None:
    driver = make_driver(sim_target)
    batches = Batches(driver)
    try:
        assert driver.resync(state_of([*profiles(), *endpoints()])).ok
        writes = batches.of("acl_add_replace")
        # six ingress lists and the egress list they share (allow all), made in one step
        assert [len(batch) for batch in writes] == [len(PODS) + 1]
        assert all(r.message == "acl_add_replace" for r in writes[0])
        binds = batches.of("acl_interface_set_acl_list")
        assert [len(batch) for batch in binds] == [len(PODS)]
        assert driver.conn.requests["acl_add_replace"] == len(PODS) + 1, "no ACL written one at a time"
        assert driver.conn.requests["acl_interface_set_acl_list"] == len(PODS)
        for i, pod in enumerate(pods):
            assert admits(sim_target, pods, pod, 8000 + i), pod
            assert not admits(sim_target, pods, pod, 8000 + (i + 1) % len(PODS)), pod
    finally:
        driver.close()


def test_an_acl_refused_inside_the_pipeline_fails_its_endpoint_only(sim_target: Target, pods: dict[str, int]) -> None:
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(profiles())).ok  # pods without endpoints: drop everything
        sim_target.emulator.faults.reject(
            "acl_add_replace", -7, when=lambda f: any(r["dstport_or_icmpcode_first"] == 8002 for r in f["r"]))
        state = state_of([*profiles(), *endpoints()])
        report = driver.resync(state)
        assert report.ok and failed_pods(report) == {"ns/p2"}
        assert "VPP refused acl_add_replace" in next(iter(report.failed.values()))
        assert not admits(sim_target, pods, "ns/p2", 8002), "it keeps drop-everything"
        for i, pod in enumerate(pods):
            if pod != "ns/p2":  # those written before and after it in the same pipeline
                assert admits(sim_target, pods, pod, 8000 + i), pod
        sim_target.emulator.faults.clear()
        report = driver.resync(state)
        assert report.ok and not report.failed
        assert admits(sim_target, pods, "ns/p2", 8002)
    finally:
        driver.close()


def test_a_bind_refused_inside_the_pipeline_fails_that_interface_only(sim_target: Target, pods: dict[str, int]) -> None:
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(profiles())).ok
        sim_target.emulator.faults.reject("acl_interface_set_acl_list", -7,
                                          when=lambda f: f["sw_if_index"] == pods["ns/p4"])
        report = driver.resync(state_of([*profiles(), *endpoints()]))
        assert report.ok and failed_pods(report) == {"ns/p4"}
        assert not admits(sim_target, pods, "ns/p4", 8004)
        assert all(admits(sim_target, pods, pod, 8000 + i) for i, pod in enumerate(pods)
                   if pod != "ns/p4")
        acl_in, acl_out = sim_target.bindings()[pods["ns/p4"]]
        acls = sim_target.our_acls()
        assert acl_in == acl_out and int(acls[acl_in[0]].count) == 0, "it keeps its drop-everything ACL"
    finally:
        driver.close()


def test_a_mover_is_bound_before_the_acl_it_leaves_is_replaced(sim_target: Target, pods: dict[str, int]) -> None:
    """All pods share one ingress ACL; then its profile changes for all but ns/p0, which moves to
    another profile: the shared ACL is replaced in place (most users keep it) only once ns/p0's
    bind to its new ACL is answered, so ns/p0 never holds the new shared content."""
    shared = b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])], outbound=[b.rule("allow")])
    everyone = dict.fromkeys(PODS, "web")
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of([*profiles(), shared, *endpoints(everyone)])).ok
        shared_acl = sim_target.bindings()[pods["ns/p1"]][1][0]
        batches = Batches(driver)
        changed = b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[81])],
                            outbound=[b.rule("allow")])
        report = driver.resync(state_of([*profiles(), changed, *endpoints({**everyone, "ns/p0": "only0"})]))
        assert report.ok and not report.failed
        steps = [(batch[0].message, [r.fields.get("acl_index", r.fields.get("sw_if_index")) for r in batch])
                 for batch in batches.sent if batch and batch[0].message.startswith("acl_")]
        assert [message for message, _ in steps] == ["acl_add_replace", "acl_interface_set_acl_list", "acl_add_replace"]
        assert steps[1][1] == [pods["ns/p0"]] and steps[2][1] == [shared_acl]
        assert admits(sim_target, pods, "ns/p0", 8000) and not admits(sim_target, pods, "ns/p0", 81)
        assert admits(sim_target, pods, "ns/p1", 81) and not admits(sim_target, pods, "ns/p1", 80)
    finally:
        driver.close()
