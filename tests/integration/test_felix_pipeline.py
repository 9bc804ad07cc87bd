"""Issue 2 acceptance: Felix's pipes → felix-shim → agent, with restarts in every order.

Everything runs as real processes: `vppagent run --driver dry-run` and `felix-shim` started on
fd 3/fd 4 by FelixStandIn exactly as Felix starts its external driver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProcess, wait_for
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn

COUNT_KEYS = ("ipsets", "policies", "profiles", "workload_endpoints", "host_endpoints", "routes")


def snapshot(extra_policy: bool = True) -> list[felix.ToDataplane]:
    msgs = [
        b.config({"ReportingIntervalSecs": "1"}),
        b.ipset("s:web", ["10.65.0.2/32", "10.65.0.3/32"]),
        b.ipset("s:db", ["10.65.1.0/28"]),
        b.policy("allow-web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:web"])]),
        b.policy("deny-db", inbound=[b.rule("deny", src_ip_set_ids=["s:db"])]),
        b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"], profiles=["kns.ns"],
                   tiers=[b.tier("default", ingress=["deny-db"]),
                          felix.TierInfo(name="app", default_action="Deny",
                                         ingress_policies=[b.policy_id("allow-web", "ns")])]),
        b.workload("ns/pod2", "cali2", ipv4=["10.65.0.3/32"], profiles=["kns.ns"]),
        b.route("10.65.1.0/26", 1, node="node2", node_ip="198.18.0.2"),
    ]
    if extra_policy:
        msgs.insert(5, b.policy("legacy", inbound=[b.rule("deny", protocol="udp")]))
    return msgs


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {k: report["counts"][k] for k in COUNT_KEYS}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path / "run" / "agent.sock", tmp_path / "agent.log", ["--driver", "dry-run"])
    a.start()
    yield a
    a.stop()


def test_pipeline_survives_agent_kill_and_shim_restart(agent: AgentProcess, tmp_path: Path) -> None:
    shim = FelixStandIn(agent.socket, log_path=tmp_path / "shim.log")
    try:
        shim.send(snapshot())
        wait_for(lambda: agent.state()["counters"]["messages"] >= 10, what="snapshot forwarded")
        assert not agent.state()["in_sync"], "nothing is in sync before InSync"
        shim.send([b.in_sync()])
        expected = {"ipsets": 2, "policies": 3, "profiles": 1, "workload_endpoints": 2,
                    "host_endpoints": 0, "routes": 1}
        wait_for(lambda: agent.state()["in_sync"], what="in sync")
        assert counts(agent.state()) == expected
        wait_for(lambda: shim.statuses() == {"ns/pod1": "up", "ns/pod2": "up"}, what="statuses on fd 4")
        wait_for(lambda: any(m.HasField("process_status_update") for m in shim.received), timeout=5,
                 what="heartbeat (ReportingIntervalSecs=1)")

        # deltas
        shim.send([b.ipset_delta("s:web", added=["10.65.0.9"], removed=["10.65.0.2"]),
                   b.workload_remove("ns/pod2"), b.policy_remove("deny-db"),
                   b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"], profiles=["kns.ns"],
                              tiers=[felix.TierInfo(name="app", default_action="Deny",
                                                    ingress_policies=[b.policy_id("allow-web", "ns")])])])
        expected.update(policies=2, workload_endpoints=1)
        wait_for(lambda: counts(agent.state()) == expected, what="deltas applied")
        wait_for(lambda: shim.statuses() == {"ns/pod1": "up"}, what="pod2 status removed")
        objects_before = agent.state()["driver_status"]["objects"]

        # the agent dies hard and comes back: the shim replays its compacted snapshot + InSync
        agent.kill()
        agent.start()
        wait_for(lambda: agent.state()["in_sync"], what="resynced from the shim's replay")
        report = agent.state()
        assert counts(report) == expected
        assert report["driver_status"]["objects"] == objects_before, "no duplicate or stale objects"
        assert report["last_resync"] == {"seconds": report["last_resync"]["seconds"], "full": True}
        assert report["counters"]["messages"] == 1 + sum(expected.values()) + 1, \
            "replay is compacted: one message per live object (+ config, + InSync)"
        assert report["counters"]["resyncs"] == 1
    finally:
        assert shim.close() == 0, "EOF on fd 3 → exit 0"

    # Felix restarts: a new shim, a new snapshot without the "legacy" policy
    shim2 = FelixStandIn(agent.socket, log_path=tmp_path / "shim2.log")
    try:
        new_snapshot = [m for m in snapshot(extra_policy=False)
                        if m.WhichOneof("payload") != "workload_endpoint_update"
                        or m.workload_endpoint_update.id.workload_id != "ns/pod2"]
        new_snapshot = [m for m in new_snapshot if not (m.HasField("active_policy_update")
                                                        and m.active_policy_update.id.name == "deny-db")]
        new_snapshot = [m for m in new_snapshot if not m.HasField("workload_endpoint_update")] + [
            b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"], profiles=["kns.ns"],
                       tiers=[felix.TierInfo(name="app", default_action="Deny",
                                             ingress_policies=[b.policy_id("allow-web", "ns")])])]
        new_snapshot[1] = b.ipset("s:web", ["10.65.0.3/32", "10.65.0.9/32"])
        shim2.send([*new_snapshot, b.in_sync()])
        wait_for(lambda: agent.state()["counters"]["streams"] == 2 and agent.state()["last_resync"]
                 and "removes" in agent.state()["last_resync"], what="resync of the new stream")
        report = agent.state()
        assert report["last_resync"]["removes"] == {"policies": ["legacy"]}
        assert report["last_resync"]["upserts"] == {}
        assert counts(report)["policies"] == 1
    finally:
        assert shim2.close() == 0


def test_shim_sigterm_exits_fast(agent: AgentProcess, tmp_path: Path) -> None:
    shim = FelixStandIn(agent.socket, log_path=tmp_path / "shim.log")
    shim.send([b.config(), b.in_sync()])
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    start = time.monotonic()
    os.kill(shim.process.pid, signal.SIGTERM)
    assert shim.process.wait(2) == 0
    assert time.monotonic() - start < 1.0
    shim.close()


def test_bad_frames_do_not_hurt_the_agent(agent: AgentProcess, tmp_path: Path) -> None:
    """A shim fed bad frames names them and exits non-zero; the agent keeps its state.

    felix-shim opens its stream to the agent while its reader decodes Felix's first frame, and the
    agent takes a new stream as a new Felix (out of sync, old state kept, until that stream's
    InSync). Which comes first is the shim's thread timing (a garbage frame is tried under every
    Felix release, ~0.2 s, the stream opens in ~35 ms), so each shim here gets its stream before it
    gets its bytes: the test does not depend on that race.
    """
    good = FelixStandIn(agent.socket, log_path=tmp_path / "good.log")
    good.send([*snapshot(), b.in_sync()])
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    before = agent.state()
    good.close_pipe()
    assert good.close() == 0

    def shim_fed(name: str, data: bytes) -> int | None:
        streams = agent.state()["counters"]["streams"]
        shim = FelixStandIn(agent.socket, log_path=tmp_path / f"{name}.log")
        wait_for(lambda: agent.state()["counters"]["streams"] > streams, what=f"the {name} shim's stream")
        shim.send_raw(data)
        return shim.close()

    # an oversized length prefix: the shim names it and exits non-zero
    assert shim_fed("bad", (1 << 40).to_bytes(8, "little")) not in (0, None)
    assert "exceeds" in (tmp_path / "bad.log").read_text() or "too large" in (tmp_path / "bad.log").read_text()
    # garbage bytes inside a frame
    assert shim_fed("garbage", (5).to_bytes(8, "little") + b"\xff\xff\xff\xff\xff") not in (0, None)
    assert "undecodable" in (tmp_path / "garbage.log").read_text()
    report = agent.state()
    assert counts(report) == counts(before)
    assert report["counters"]["messages"] == before["counters"]["messages"], "nothing of theirs forwarded"
    assert report["driver_status"]["objects"] == before["driver_status"]["objects"]
    assert not report["in_sync"], "a new stream without InSync: the old state is served, nothing applied"

    # Felix restarts its driver after a non-zero exit: its replay finds nothing to change (the
    # batch holding InSync is applied under the lock GetState takes, so in sync means applied)
    again = FelixStandIn(agent.socket, log_path=tmp_path / "again.log")
    again.send([*snapshot(), b.in_sync()])
    wait_for(lambda: agent.state()["in_sync"], what="in sync after the restart")
    report = agent.state()
    assert counts(report) == counts(before)
    for counter in ("applies", "resyncs"):
        assert report["counters"][counter] == before["counters"][counter], f"the replay needed {counter}"
    assert again.close() == 0


def test_state_cli_against_live_agent(agent: AgentProcess, tmp_path: Path) -> None:
    shim = FelixStandIn(agent.socket, log_path=tmp_path / "shim.log")
    shim.send([*snapshot(), b.in_sync()])
    wait_for(lambda: agent.state()["in_sync"], what="in sync")
    wait_for(lambda: all(e["status"] == "up" for e in agent.state()["workload_endpoints"]), what="up")
    cli = [sys.executable, "-m", "vppagent.cli", "state", "--socket", str(agent.socket)]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=30, check=True).stdout
    report = json.loads(out)
    for key in ("driver", "in_sync", "counts", "workload_endpoints", "last_apply"):
        assert key in report
    assert set(COUNT_KEYS) <= set(report["counts"])
    assert report["driver"] == "dry-run" and report["in_sync"] is True
    assert {"orchestrator_id", "workload_id", "endpoint_id", "name", "status", "error"} <= set(
        report["workload_endpoints"][0])
    assert {"seconds", "ok", "error"} <= set(report["last_apply"])
    human = subprocess.run(cli, capture_output=True, text=True, timeout=30, check=True).stdout
    assert "k8s/ns/pod1/eth0" in human and "cali1" in human and "up" in human
    assert shim.close() == 0


def test_bgp_config_follows_felix_state(tmp_path: Path) -> None:
    """--bird-config: the agent renders BIRD config from HostMetadata/IPAM blocks after each apply."""
    import shutil

    if shutil.which("bird") is None:
        pytest.skip("BIRD 2 is not installed (Debian package bird2)")
    sock = tmp_path / "run" / "agent.sock"
    conf = tmp_path / "bird.conf"
    agent = AgentProcess(sock, tmp_path / "agent.log", ["--driver", "dry-run", "--bird-config", str(conf),
                                                        "--bird-socket", str(tmp_path / "bird.ctl")])
    agent.start()
    try:
        shim = FelixStandIn(sock, log_path=tmp_path / "shim.log")
        shim.send([b.config({"FelixHostname": "node1"}),
                   felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
                       hostname="node1", ipv4_addr="198.18.0.1/24")),
                   felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
                       hostname="node2", ipv4_addr="198.18.0.2/24")),
                   felix.ToDataplane(ipam_pool_update=felix.IPAMPoolUpdate(
                       id="pool1", pool=felix.IPAMPool(cidr="10.244.0.0/16"))),
                   b.route("10.244.1.0/26", 4, node="node1", node_ip="198.18.0.1"),
                   b.in_sync()])
        wait_for(conf.exists, what="bird.conf written")
        text = conf.read_text()
        assert "198.18.0.2" in text and "10.244.1.0/26" in text
        subprocess.run(["bird", "-p", "-c", str(conf)], check=True, capture_output=True, timeout=10)
        assert "bgp" in agent.state()
        shim.close()
    finally:
        agent.stop()
