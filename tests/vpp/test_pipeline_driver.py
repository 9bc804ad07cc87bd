"""The driver's pipelined writes keep each object's own outcome: one pod's source guard or route
that VPP refuses inside a pipeline fails that endpoint alone (closed), the others are programmed;
and the guards of many pods go out as a few pipelines, not a round trip per message."""

from __future__ import annotations

from typing import Any

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.api.connection import ApiRequest
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.vppsim import Direction, Packet

PODS = {f"ns/p{i}": f"10.65.0.{i + 2}" for i in range(6)}
PEER = "10.65.9.9"


def messages() -> list[felix.ToDataplane]:
    return [b.config({}), b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
            *(b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"], profiles=["open"])
              for i, (pod, ip) in enumerate(PODS.items()))]


def sends(target: Target, sw_if_index: int, src: str) -> bool:
    return target.emulator.evaluate(sw_if_index, Direction.INPUT, Packet.make(src, PEER, "udp", 40000, 53)).permitted


def failed_pods(report: Any) -> set[str]:
    return {key.workload_id for _, key in report.failed}


def test_one_pods_refused_guard_session_fails_that_pod_only(sim_target: Target) -> None:
    pods = {pod: sim_target.pod(pod) for pod in PODS}
    refused = bytes([10, 65, 0, 4])  # ns/p2's address, where a guard session matches it (IPv4 source at 12)
    sim_target.emulator.faults.reject("classify_add_del_session", -7, when=lambda f: f["match"][12:16] == refused)
    driver = make_driver(sim_target)
    try:
        state = state_of(messages())
        report = driver.resync(state)
        assert report.ok and failed_pods(report) == {"ns/p2"}
        assert "source guard" in next(iter(report.failed.values()))
        assert not sends(sim_target, pods["ns/p2"], PODS["ns/p2"]), "its egress stays closed"
        for pod, ip in PODS.items():
            if pod != "ns/p2":
                assert sends(sim_target, pods[pod], ip) and not sends(sim_target, pods[pod], "10.65.7.7"), pod
        sim_target.emulator.faults.clear()
        report = driver.resync(state)
        assert report.ok and not report.failed
        assert sends(sim_target, pods["ns/p2"], PODS["ns/p2"]) and not sends(sim_target, pods["ns/p2"], "10.65.7.7")
    finally:
        driver.close()


def test_one_pods_refused_guard_attach_fails_that_pod_only(sim_target: Target) -> None:
    pods = {pod: sim_target.pod(pod) for pod in PODS}
    sim_target.emulator.faults.reject("input_acl_set_interface", -7, when=lambda f: f["sw_if_index"] == pods["ns/p4"])
    driver = make_driver(sim_target)
    try:
        report = driver.resync(state_of(messages()))
        assert report.ok and failed_pods(report) == {"ns/p4"}
        assert not sends(sim_target, pods["ns/p4"], PODS["ns/p4"])
        assert all(sends(sim_target, pods[p], ip) for p, ip in PODS.items() if p != "ns/p4")
        assert {i for i, _ in driver.guards.chains} == {i for p, i in pods.items() if p != "ns/p4"}
    finally:
        driver.close()


def test_one_pods_refused_route_fails_that_pod_only(sim_target: Target) -> None:
    pods = {pod: sim_target.pod(pod) for pod in PODS}
    sim_target.emulator.faults.reject(
        "ip_route_add_del", -7, when=lambda f: any(p["sw_if_index"] == pods["ns/p1"] for p in f["route"]["paths"]))
    driver = make_driver(sim_target)
    try:
        state = state_of(messages())
        report = driver.resync(state)
        assert report.ok and failed_pods(report) == {"ns/p1"}
        routes = sim_target.routes()
        assert f"{PODS['ns/p1']}/32" not in routes
        assert all(f"{ip}/32" in routes for p, ip in PODS.items() if p != "ns/p1")
        sim_target.emulator.faults.clear()
        assert driver.resync(state).ok and f"{PODS['ns/p1']}/32" in sim_target.routes()
    finally:
        driver.close()


def recorded_pipelines(driver: VppDriver) -> list[list[str]]:
    """From now on, each pipeline the driver sends: its messages' names, in order."""
    batches: list[list[str]] = []
    pipeline = driver.conn.pipeline

    def recording(requests: list[ApiRequest]) -> list[Any]:
        batches.append([r.message for r in requests])
        return pipeline(requests)

    driver.conn.pipeline = recording  # type: ignore[method-assign]
    return batches

def test_many_pods_guards_go_out_in_a_few_pipelines(sim_target: Target) -> None:
    for pod in PODS:
        sim_target.pod(pod)
    driver = make_driver(sim_target)
    batches = recorded_pipelines(driver)
    try:
        assert driver.resync(state_of(messages())).ok
        sessions = [batch for batch in batches if set(batch) == {"classify_add_del_session"}]
        # each pod: its address and the drop mark (IPv4), the drop mark, fe80::/10 (IPv6)
        assert [len(batch) for batch in sessions] == [4 * len(PODS)], "every guard's sessions in one pipeline"
        attaches = [batch for batch in batches if set(batch) == {"input_acl_set_interface"}]
        assert [len(batch) for batch in attaches] == [2 * len(PODS)]
        routes = [batch for batch in batches if set(batch) == {"ip_route_add_del"}]
        assert [len(batch) for batch in routes] == [len(PODS)]
    finally:
        driver.close()


def test_a_new_driver_reads_the_guards_back_in_a_few_pipelines(sim_target: Target) -> None:
    pods = {pod: sim_target.pod(pod) for pod in PODS}
    state = state_of(messages())
    first = make_driver(sim_target)
    try:
        assert first.resync(state).ok
    finally:
        first.close()
    driver = make_driver(sim_target)  # an agent restart: the guards are read back from VPP
    batches = recorded_pipelines(driver)
    try:
        report = driver.resync(state)
        assert report.ok and report.writes == 0
        assert {i for i, _ in driver.guards.chains} == set(pods.values()), "every guard adopted"
        dumps = [batch for batch in batches if batch and set(batch) == {"classify_session_dump"}]
        # every table VPP holds (here the guards', 3 a pod) read once, as one pipeline, for the
        # classifier's read-back and the guards' alike (readback.py)
        assert [len(batch) for batch in dumps] == [3 * len(PODS)]
        infos = [batch for batch in batches if batch and set(batch) == {"classify_table_info"}]
        assert [len(batch) for batch in infos] == [3 * len(PODS)]
        assert sum(batch.count("classify_table_by_interface") for batch in batches) == len(PODS)
    finally:
        driver.close()
