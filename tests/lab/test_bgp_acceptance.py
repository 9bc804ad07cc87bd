"""Issue 7's acceptance through the real path: Felix (stand-in) → felix-shim → agent → BIRD.

One cluster of three node namespaces on a bridge, each with `vppagent run --bird-run` fed only
through its felix-shim, pods made by each agent's CNI Add. Checked in turn: sessions Established
(birdc on each agent's BIRD socket), every block in the other kernels, pods pinging across nodes,
a block withdrawn everywhere after a RouteRemove, BIRD SIGKILLed and back, a wrong password on one
node (its sessions down, the others up), and a route-reflector topology after restarting agents.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.lab.scenarios import BGP_MESH
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders
from vppagent.lab.agents import NodeAgent
from vppagent.lab.run import LabOptions, LabRun
from vppagent.lab.scenario import Scenario, parse_scenario

pytestmark = pytest.mark.root

NODES = ("node1", "node2", "node3")
TIMEOUT = 15.0


def settle(what: str, predicate: Callable[[], object], timeout: float = TIMEOUT) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    took = time.monotonic() - started
    print(f"{what}: {took:.2f} s")
    return took


def session(kind: str, sc: Scenario, node: str) -> str:
    return f"{kind}_{str(sc.node_address(node)).replace('.', '_')}"


def established(agent: NodeAgent, names: list[str]) -> bool:
    sessions = agent.bgp_sessions()
    return all(sessions.get(name, "").startswith("Established") for name in names)


def learnt(lab: LabRun, node: str, prefix: str, via: str) -> bool:
    return f"via {via} " in lab.agents[node].kernel_route(prefix) + " "


def ping(lab: LabRun, source_pod: str, target_pod: str) -> bool:
    assert lab.topology is not None
    proc = subprocess.run(["ip", "netns", "exec", lab.topology.pod_ns(source_pod), "ping", "-c1", "-W1",
                           str(lab.scenario.pod_address(target_pod))], capture_output=True, timeout=10, check=False)
    return proc.returncode == 0


def test_bgp_acceptance_through_agents_and_felix_shim() -> None:
    sc = parse_scenario(BGP_MESH)
    started = time.monotonic()
    with LabRun(sc, LabOptions()) as lab:  # start() returns once every block is in every kernel
        agents = lab.agents
        print(f"cluster up with routes learnt: {time.monotonic() - started:.2f} s")
        mesh = {n: [session("Mesh", sc, m) for m in NODES if m != n] for n in NODES}
        settle("all 6 mesh sessions Established (with a password)",
               lambda: all(established(agents[n], mesh[n]) for n in NODES))
        for n in NODES:
            assert agents[n].kernel_route(str(sc.node_block(n))).startswith("blackhole"), n
            for m in NODES:
                if m != n:
                    assert learnt(lab, n, str(sc.node_block(m)), str(sc.node_address(m))), (n, m)
        for a, b in (("pod1", "pod2"), ("pod2", "pod3"), ("pod3", "pod1")):
            assert ping(lab, a, b), f"{a} -> {b}"
        assert all(c.actual for c in lab.run_step(next(sc.snapshots())).cells), "TCP across nodes"

        check_block_withdrawn_everywhere(lab, sc)
        check_sigkilled_bird_comes_back(lab, mesh)
        check_wrong_password_keeps_only_that_node_down(lab, sc)
        check_route_reflector(lab, sc)
    print(f"whole acceptance: {time.monotonic() - started:.2f} s")


def check_block_withdrawn_everywhere(lab: LabRun, sc: Scenario) -> None:
    extra, owner = "10.65.201.0/24", str(sc.node_address("node1"))
    lab.agents["node1"].send([builders.route(extra, felix.LOCAL_WORKLOAD, "node1", owner)])
    lab.agents["node1"].wait_applied()
    settle("a new block of node1 in node2 and node3", lambda: all(learnt(lab, n, extra, owner)
                                                                   for n in ("node2", "node3")))
    lab.agents["node1"].send([felix.ToDataplane(route_remove=felix.RouteRemove(dst=extra))])
    lab.agents["node1"].wait_applied()
    settle("RouteRemove withdraws it everywhere", lambda: all(lab.agents[n].kernel_route(extra) == ""
                                                              for n in ("node1", "node2", "node3")))


def bird_process(agent: NodeAgent) -> dict[str, Any]:
    process: dict[str, Any] = agent.state()["bgp"]["bird_process"]
    return process


def check_sigkilled_bird_comes_back(lab: LabRun, mesh: dict[str, list[str]]) -> None:
    agent = lab.agents["node2"]
    before = bird_process(agent)
    assert before["running"] and before["pid"]
    os.kill(before["pid"], signal.SIGKILL)
    settle("bird restarted by the agent after SIGKILL",
           lambda: bird_process(agent)["pid"] not in (None, before["pid"]))
    assert bird_process(agent)["restarts"] == before["restarts"] + 1
    settle("sessions re-established after SIGKILL",
           lambda: all(established(lab.agents[n], mesh[n]) for n in NODES))
    assert ping(lab, "pod1", "pod2")


def check_wrong_password_keeps_only_that_node_down(lab: LabRun, sc: Scenario) -> None:
    agents = lab.agents
    agents["node3"].restart(bgp={"node_mesh_password": "wrong-secret"})
    node3_block = str(sc.node_block("node3"))
    settle("node3's sessions down and its block gone from node1",
           lambda: not established(agents["node1"], [session("Mesh", sc, "node3")])
           and agents["node1"].kernel_route(node3_block) == "")
    time.sleep(2.5)  # several connect retries (1 s) later, still down
    assert not any(info.startswith("Established") for info in agents["node3"].bgp_sessions().values())
    assert not established(agents["node2"], [session("Mesh", sc, "node3")])
    assert established(agents["node1"], [session("Mesh", sc, "node2")])
    assert established(agents["node2"], [session("Mesh", sc, "node1")])
    assert ping(lab, "pod1", "pod2") and not ping(lab, "pod1", "pod3")


def check_route_reflector(lab: LabRun, sc: Scenario) -> None:
    """node1 becomes the reflector (by label, as Calico chooses them); no mesh any more."""
    agents = lab.agents
    labelled = felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
        hostname="node1", ipv4_addr=str(sc.node_address("node1")), labels={"route-reflector": "true"}))
    for n in NODES:
        agents[n].send([labelled])
        agents[n].wait_applied()
    rr = {"node_mesh": False, "route_reflector_label": "route-reflector=true"}
    configs = {"node1": {**rr, "route_reflector_cluster_id": "224.0.0.1"}, "node2": rr, "node3": rr}
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: agents[n].restart(bgp=configs[n]), NODES))
    settle("reflector sessions Established",
           lambda: established(agents["node1"], [session("RrClient", sc, "node2"), session("RrClient", sc, "node3")])
           and all(established(agents[n], [session("Rr", sc, "node1")]) for n in ("node2", "node3")))
    assert set(agents["node2"].bgp_sessions()) == {session("Rr", sc, "node1")}, "clients talk only to the RR"
    settle("reflected routes keep the original next hop",
           lambda: learnt(lab, "node2", str(sc.node_block("node3")), str(sc.node_address("node3")))
           and learnt(lab, "node3", str(sc.node_block("node2")), str(sc.node_address("node2"))))
    assert ping(lab, "pod2", "pod3") and ping(lab, "pod3", "pod1")
