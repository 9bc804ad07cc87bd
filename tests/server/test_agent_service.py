"""The agent's gRPC service in-process with the dry-run driver: sync, status, bad input, swap."""

from __future__ import annotations

import stat

import pytest

from tests.agentproc import wait_for
from tests.server.conftest import AgentHarness
from vppagent.gen.vppagent.v1 import agent_pb2
from vppagent.lab import builders as b


def snapshot() -> list:
    return [
        b.config({"ReportingIntervalSecs": "30"}),
        b.ipset("s:web", ["10.0.0.1/32"]),
        b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80],
                                                src_ip_set_ids=["s:web"])]),
        b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/pod1", "cali1", ipv4=["10.0.0.5/32"],
                   tiers=[b.tier("default", ingress=["allow-web"])], profiles=["kns.ns"]),
        b.workload("ns/pod2", "cali2", ipv4=["10.0.0.6/32"], profiles=["kns.ns"], state="down"),
    ]


def statuses(stream) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for msg in stream.received:
        if msg.HasField("workload_endpoint_status_update"):
            u = msg.workload_endpoint_status_update
            out[u.id.workload_id] = u.status.status
        elif msg.HasField("workload_endpoint_status_remove"):
            out.pop(msg.workload_endpoint_status_remove.id.workload_id, None)
    return out


def test_socket_is_private(agent: AgentHarness) -> None:
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600


def test_snapshot_insync_counts_and_statuses(agent: AgentHarness) -> None:
    stream = agent.stream()
    stream.send(*snapshot())
    wait_for(lambda: agent.state()["counts"]["ipsets"] == 0 and not agent.state()["in_sync"],
             what="snapshot pending before InSync")
    stream.send(b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    state = agent.state()
    assert {k: state["counts"][k] for k in ("ipsets", "policies", "profiles", "workload_endpoints",
                                            "host_endpoints", "routes")} == {
        "ipsets": 1, "policies": 1, "profiles": 1, "workload_endpoints": 2, "host_endpoints": 0, "routes": 0}
    wait_for(lambda: statuses(stream) == {"ns/pod1": "up", "ns/pod2": "down"}, what="status updates")
    assert state["driver_status"]["resyncs"] == 1
    stream.send(b.workload_remove("ns/pod2"))
    wait_for(lambda: statuses(stream) == {"ns/pod1": "up"}, what="status remove")
    stream.close()


@pytest.mark.parametrize(("bad_rule", "needles"), [
    (b.rule("allow", protocol="tcp", dst_ports=[(90, 80)]), ["allow-web", "90"]),
    (b.rule("allow", src_net=["10.0.0.0/33"]), ["allow-web", "10.0.0.0/33"]),
    (b.rule("allow", src_ip_set_ids=["s:nope"]), ["allow-web", "s:nope"]),
    (b.rule("allow", protocol="bogus"), ["allow-web", "bogus"]),
])
def test_bad_policy_reports_error_and_keeps_other_state(agent: AgentHarness, bad_rule, needles) -> None:  # type: ignore[no-untyped-def]
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: statuses(stream).get("ns/pod1") == "up", what="pod1 up")
    stream.send(b.policy("allow-web", inbound=[bad_rule]))
    wait_for(lambda: statuses(stream).get("ns/pod1") == "error", what="pod1 error")
    state = agent.state()
    pod1 = next(e for e in state["workload_endpoints"] if e["workload_id"] == "ns/pod1")
    assert all(n in pod1["error"] for n in needles), pod1["error"]
    assert state["held_back"], "the report lists what is held back"
    assert statuses(stream)["ns/pod2"] == "down", "unrelated endpoint unaffected"
    # what is programmed still has the good version of the policy
    held = agent.core.driver.held  # type: ignore[attr-defined]
    assert next(iter(held.policies.values())).inbound_rules[0].dst_ports[0].first == 80
    # a fix clears the error
    stream.send(b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[(80, 90)])]))
    wait_for(lambda: statuses(stream).get("ns/pod1") == "up", what="pod1 recovers")
    stream.close()


def test_burst_of_deltas_is_coalesced(agent: AgentHarness) -> None:
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    before = agent.state()["counters"]["applies"]
    stream.send(*[b.ipset_delta("s:web", added=[f"10.1.{i // 250}.{i % 250}"]) for i in range(1000)])
    wait_for(lambda: agent.state()["counters"]["messages"] >= 1007, what="burst consumed")
    wait_for(lambda: len(agent.core.driver.held.ipsets["s:web"].members) == 1001,  # type: ignore[attr-defined]
             what="burst applied")
    applies = agent.state()["counters"]["applies"] - before
    assert 1 <= applies <= 10, f"1000 deltas took {applies} driver applies"
    stream.close()


def test_new_stream_replaces_old_and_resyncs_by_diff(agent: AgentHarness) -> None:
    first = agent.stream()
    first.send(*snapshot(), b.policy("extra", inbound=[b.rule("deny")]), b.in_sync())
    wait_for(lambda: agent.state()["counts"]["policies"] == 2, what="first snapshot")
    second = agent.stream()
    second.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["counts"]["policies"] == 1, what="second snapshot")
    assert agent.state()["last_resync"]["removes"] == {"policies": ["extra"]}
    assert agent.state()["last_resync"]["upserts"] == {}
    wait_for(lambda: first.call.done(), what="old stream ended")
    second.close()


def test_set_driver_swaps_and_reports(agent: AgentHarness) -> None:
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    reply = agent.stub.SetDriver(agent_pb2.SetDriverRequest(driver="other"), timeout=5)
    assert reply.ok and reply.previous == "dry-run" and reply.active == "other" and reply.seconds >= 0
    assert agent.core.driver.held.counts()["policies"] == 1  # type: ignore[attr-defined]
    stream.close()


def test_failing_swap_keeps_old_driver(agent: AgentHarness) -> None:
    from vppagent.drivers.base import ApplyReport
    from vppagent.drivers.dryrun import DryRunDriver

    class Broken(DryRunDriver):
        def resync(self, state):  # type: ignore[no-untyped-def]
            return ApplyReport(ok=False, error="simulated programming failure")

    agent.core._driver_factory = lambda name: Broken(name=name)
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    reply = agent.stub.SetDriver(agent_pb2.SetDriverRequest(driver="broken"), timeout=5)
    assert not reply.ok and "simulated programming failure" in reply.error
    assert reply.active == "dry-run" and agent.state()["driver"] == "dry-run"
    stream.close()


def test_driver_failure_marks_endpoints_error_and_retries(agent: AgentHarness) -> None:
    from vppagent.drivers.base import ApplyReport

    driver = agent.core.driver
    real_apply = driver.apply
    failures = {"left": 2}

    def flaky(diff, state):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            return ApplyReport(ok=False, error="dataplane said no")
        return real_apply(diff, state)

    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: statuses(stream).get("ns/pod1") == "up", what="pod1 up")
    driver.apply = flaky  # type: ignore[method-assign]
    stream.send(b.workload("ns/pod1", "cali1", ipv4=["10.0.0.9/32"], profiles=["kns.ns"]))
    wait_for(lambda: statuses(stream).get("ns/pod1") == "error", what="pod1 error")
    wait_for(lambda: statuses(stream).get("ns/pod1") == "up", timeout=8, what="retry succeeds")
    assert failures["left"] == 0
    stream.close()


def test_sync_batch_is_the_same_stream_in_batches(agent: AgentHarness) -> None:
    msgs = [*snapshot(), b.in_sync()]
    batches = [agent_pb2.ToDataplaneBatch(messages=msgs[i:i + 3]) for i in range(0, len(msgs), 3)]
    received: list = []

    def requests():  # type: ignore[no-untyped-def]
        yield from batches
        wait_for(lambda: len(received) >= 2, what="statuses")  # keep the stream open until they arrive

    call = agent.stub.SyncBatch(requests())
    for msg in call:
        received.append(msg)
        if len(received) >= 2:
            break
    state = agent.state()
    assert state["in_sync"] and state["counts"]["workload_endpoints"] == 2
    got = {m.workload_endpoint_status_update.id.workload_id: m.workload_endpoint_status_update.status.status
           for m in received}
    assert got == {"ns/pod1": "up", "ns/pod2": "down"}
    call.cancel()


def test_metrics_follow_the_agent(agent: AgentHarness) -> None:
    from prometheus_client import generate_latest

    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    wait_for(lambda: b"vppagent_endpoints{status=\"down\"} 1.0" in generate_latest(agent.core.metrics.registry),
             what="endpoint gauge")
    text = generate_latest(agent.core.metrics.registry).decode()
    assert 'vppagent_messages_received_total{type="ipset_update"} 1.0' in text
    assert 'vppagent_objects_programmed{kind="policies"} 1.0' in text
    assert 'vppagent_endpoints{status="up"} 1.0' in text
    assert 'vppagent_driver{driver="dry-run"} 1.0' in text
    assert "vppagent_resyncs_total 1.0" in text
    stream.close()


def test_cni_service_validates_and_delegates_to_the_driver(agent: AgentHarness) -> None:
    import grpc

    from vppagent.gen.cni import cni_pb2, cni_pb2_grpc
    from vppagent.server.cni_service import serve_cni

    path = agent.socket.with_name("cni.sock")
    server = serve_cni(agent.core, path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with grpc.insecure_channel(f"unix:{path}") as channel:
            stub = cni_pb2_grpc.CniDataplaneStub(channel)  # type: ignore[no-untyped-call]
            good = cni_pb2.AddRequest(
                interface_name="eth0", netns="/proc/self/ns/net", desired_host_interface_name="cali0123",
                container_ips=[cni_pb2.IPConfig(address="10.1.2.3/32")],
                workload=cni_pb2.WorkloadIDs(namespace="ns", pod="p", endpoint="eth0", orchestrator="k8s"))
            reply = stub.Add(good, timeout=5)
            assert reply.successful and reply.host_interface_name == "cali0123"
            assert "cali0123" in agent.core.driver.pods  # type: ignore[attr-defined]
            bad = cni_pb2.AddRequest()
            bad.CopyFrom(good)
            bad.desired_host_interface_name = "cali$(reboot)"
            reply = stub.Add(bad, timeout=5)
            assert not reply.successful and "not a valid interface name" in reply.error_message
            reply = stub.Del(cni_pb2.DelRequest(interface_name="eth0", netns="/proc/self/ns/net"), timeout=5)
            assert reply.successful and "cali0123" not in agent.core.driver.pods  # type: ignore[attr-defined]
    finally:
        server.stop(0)


def test_swap_with_some_objects_failing_is_refused(agent: AgentHarness) -> None:
    from vppagent.drivers.base import ApplyReport
    from vppagent.drivers.dryrun import DryRunDriver
    from vppagent.state.model import Kind, WorkloadKey

    removed: list[str] = []

    class Partial(DryRunDriver):
        def resync(self, state):  # type: ignore[no-untyped-def]
            if not state.workload_endpoints:  # remove_all
                removed.append(self.name)
                return ApplyReport()
            return ApplyReport(failed={(Kind.WORKLOAD_ENDPOINT, WorkloadKey("k8s", "ns/pod1", "eth0")): "no room"})

    agent.core._driver_factory = lambda name: Partial(name=name)
    agent.core.driver.programs_dataplane = True  # stands in for a driver that programs: pod1 is up in it
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    reply = agent.stub.SetDriver(agent_pb2.SetDriverRequest(driver="partial"), timeout=5)
    assert not reply.ok and "no room" in reply.error and "k8s/ns/pod1/eth0" in reply.error
    assert agent.state()["driver"] == "dry-run" and removed == ["partial"], "the half-programmed driver cleans up"
    stream.close()


def test_driver_background_reprogramming_updates_statuses(agent: AgentHarness) -> None:
    """A driver's own work (a resync after its dataplane restarted) runs in `poll`, which the
    agent calls when a report's `next_run` says; statuses follow the poll's report."""
    from vppagent.drivers.base import ApplyReport
    from vppagent.state.model import Kind, WorkloadKey

    driver = agent.core.driver
    polled: list[ApplyReport] = []
    script = [ApplyReport(failed={(Kind.WORKLOAD_ENDPOINT, WorkloadKey("k8s", "ns/pod1", "eth0")): "VPP restarted"},
                          next_run=0.05)] * 3 + [ApplyReport()]

    def poll() -> ApplyReport:
        report = script.pop(0) if script else ApplyReport()
        polled.append(report)
        return report

    real_resync = driver.resync

    def resync(state):  # type: ignore[no-untyped-def]
        report = real_resync(state)
        report.next_run = 0.05
        return report

    driver.poll = poll  # type: ignore[method-assign]
    driver.resync = resync  # type: ignore[method-assign]
    stream = agent.stream()
    stream.send(*snapshot(), b.in_sync())
    wait_for(lambda: statuses(stream).get("ns/pod1") == "error", what="error after a poll's report")
    wait_for(lambda: statuses(stream).get("ns/pod1") == "up", what="up again after the next poll's")
    assert len(polled) >= 4
    stream.close()
