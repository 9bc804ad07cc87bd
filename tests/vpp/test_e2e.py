"""Acceptance, end to end: Felix's pipes → felix-shim → `vppagent run --driver vpp` → the emulator.

Real processes: the agent and felix-shim (started on fd 3/4 by FelixStandIn as Felix starts its
driver); the emulator listens in this process. Three pods are attached through the agent's CNI
socket (af_packet on real veths in real namespaces, as root) or, without root, exist as interfaces
tagged with their workload ids. The policy has tiers, pass, negations, IP sets, a named port and
ICMP; for every ordered pod pair and every port tried, the emulator's connectivity (request out of
one pod's interface, into the other's, answer back through the sessions) equals the policy core's
evaluator (the sender's egress and the receiver's ingress). Then deltas change the answers.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.agentproc import AgentProcess, wait_for
from tests.vpp.helpers import Target, wkey
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.cni import cni_pb2, cni_pb2_grpc
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet as PolicyPacket
from vppagent.state.model import DataplaneState

PODS = {"ns/front": "10.65.0.2", "ns/back": "10.65.0.3", "ns/db": "10.65.0.4"}
TRIES = [("tcp", 80), ("tcp", 8080), ("tcp", 5432), ("udp", 53), ("icmp", 8), ("icmp", 13)]


def snapshot() -> list[felix.ToDataplane]:
    front, back, db = PODS.values()
    tiers = [
        felix.TierInfo(name="security", default_action="Deny",
                       ingress_policies=[b.policy_id("guard")], egress_policies=[b.policy_id("guard")]),
        felix.TierInfo(name="app", default_action="Deny",
                       ingress_policies=[b.policy_id("app", "ns")], egress_policies=[b.policy_id("app", "ns")]),
    ]
    return [
        b.config({"ReportingIntervalSecs": "0"}),
        b.ipset("s:front", [front]),
        b.ipset("s:quarantine", ["10.65.7.0/24"]),
        b.ipset("n:http", [f"{back},tcp:8080", f"{db},tcp:5432"], kind="ip_and_port"),
        # security tier: drop quarantined sources, let the pod network pass on to the app tier
        b.policy("guard", inbound=[b.rule("deny", src_ip_set_ids=["s:quarantine"]),
                                   b.rule("pass", src_net=["10.65.0.0/16"])],
                 outbound=[b.rule("pass", dst_net=["10.65.0.0/16"])]),
        b.policy("app", namespace="ns", inbound=[
            # the frontend may reach the named http ports (back:8080, db:5432)
            b.rule("allow", protocol="tcp", src_ip_set_ids=["s:front"], dst_named_port_ip_set_ids=["n:http"]),
            # ping from anyone but the db; no other ICMP
            b.rule("allow", protocol="icmp", icmp_type=8, not_src_net=[f"{db}/32"]),
            # DNS-ish UDP from everything except the frontend
            b.rule("allow", protocol="udp", dst_ports=[53], not_src_ip_set_ids=["s:front"]),
        ], outbound=[
            b.rule("deny", protocol="tcp", dst_ports=[80]),
            b.rule("allow", not_protocol="udp"),
            b.rule("allow", protocol="udp", dst_ports=[53]),
        ]),
        *[b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"], tiers=tiers) for i, (pod, ip) in enumerate(PODS.items())],
        b.route("10.65.64.0/26", 1, node="node2", node_ip="198.18.0.2"),
    ]


class VppAgent(AgentProcess):
    """The agent on the VPP driver, with pods attached through its CNI socket."""

    def __init__(self, socket: Path, log: Path, vpp_socket: str) -> None:
        super().__init__(socket, log, ["--driver", "vpp", "--vpp-api-socket", vpp_socket,
                                       "--pod-interface", "af_packet"])

    def cni_add(self, netns: str, workload_id: str, ip: str, host_ifname: str) -> cni_pb2.AddReply:
        namespace, pod = workload_id.split("/")
        request = cni_pb2.AddRequest(
            interface_name="eth0", netns=netns, desired_host_interface_name=host_ifname,
            container_ips=[cni_pb2.IPConfig(address=f"{ip}/32")],
            workload=cni_pb2.WorkloadIDs(name=pod, namespace=namespace, pod=pod, endpoint="eth0",
                                         orchestrator="k8s"))
        with grpc.insecure_channel(f"unix:{self.cni_socket}") as channel:
            reply: cni_pb2.AddReply = cni_pb2_grpc.CniDataplaneStub(channel).Add(  # type: ignore[no-untyped-call]
                request, timeout=10)
        return reply


@pytest.fixture
def agent(sim_target: Target, tmp_path: Path) -> Iterator[VppAgent]:
    run = Path(f"/tmp/vpa-e2e-{uuid.uuid4().hex[:8]}")  # unix socket paths must stay short
    run.mkdir()
    a = VppAgent(run / "agent.sock", tmp_path / "agent.log", sim_target.socket_path)
    a.start()
    yield a
    a.stop()
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def pod_namespaces() -> Iterator[dict[str, str] | None]:
    """One network namespace per pod when we may create them (root), else None."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    made = {}
    for i, pod in enumerate(PODS):
        name = f"vpae2e{uuid.uuid4().hex[:6]}{i}"
        if subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=20).returncode:
            break
        made[pod] = name
    yield made if len(made) == len(PODS) else None
    for name in made.values():
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def attach_pods(agent: VppAgent, target: Target, namespaces: dict[str, str] | None) -> dict[str, int]:
    if namespaces is None:  # no root: the pods' interfaces as a CNI Add leaves them
        return {pod: target.pod(pod) for pod in PODS}
    for i, (pod, ip) in enumerate(PODS.items()):
        reply = agent.cni_add(f"/var/run/netns/{namespaces[pod]}", pod, ip, f"vpae2e{i}{uuid.uuid4().hex[:4]}")
        assert reply.successful, reply.error_message
    by_tag = {i.tag: i.sw_if_index for i in target.emulator.state.interfaces.all()}
    return {pod: by_tag[workload_tag(wkey(pod))] for pod in PODS}


def connectivity_matches(target: Target, interfaces: dict[str, int], state: DataplaneState,
                         established: list[int] | None = None) -> list[str]:
    """Every ordered pod pair and port: emulator connect() vs the evaluator; the mismatches.
    `established` (if given) receives how many connections were made."""
    sim = target.emulator
    wrong = []
    made = 0
    for src, src_ip in PODS.items():
        for dst, dst_ip in PODS.items():
            if src == dst:
                continue
            for proto, port in TRIES:
                if proto == "icmp":
                    pkt = PolicyPacket(1, ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip), icmp_type=port)
                else:
                    pkt = PolicyPacket(6 if proto == "tcp" else 17, ipaddress.ip_address(src_ip),
                                       ipaddress.ip_address(dst_ip), 40000, port)
                expected = (verdict(state, wkey(src), "egress", pkt).allowed
                            and verdict(state, wkey(dst), "ingress", pkt).allowed)
                with sim.state.lock:
                    sim.state.acl.clear_sessions()
                got = sim.connect((interfaces[src], src_ip), (interfaces[dst], dst_ip), proto, port).established
                made += got
                if got != expected:
                    wrong.append(f"{src} -> {dst} {proto}/{port}: VPP {got}, Felix {expected}")
    if established is not None:
        established.append(made)
    return wrong


def test_felix_shim_agent_vpp_connectivity_equals_the_evaluator(
        agent: VppAgent, sim_target: Target, pod_namespaces: dict[str, str] | None, tmp_path: Path) -> None:
    interfaces = attach_pods(agent, sim_target, pod_namespaces)
    shim = FelixStandIn(agent.socket, log_path=tmp_path / "shim.log")
    try:
        msgs = snapshot()
        shim.send([*msgs, b.in_sync()])
        state = DataplaneState()
        for m in msgs:
            state.apply(m)
        wait_for(lambda: shim.statuses() == {p: "up" for p in PODS}, what="all pods up on fd 4")
        report = agent.state()
        assert report["driver"] == "vpp" and report["driver_status"]["vpp_version"] == "26.06.0-release"
        made: list[int] = []
        assert connectivity_matches(sim_target, interfaces, state, made) == []
        assert 0 < made[0] < 6 * len(TRIES), "the scenario allows some and denies some"
        assert "10.65.64.0/26" in sim_target.routes(), "the remote block is routed via node2"

        # deltas: the db joins the frontend set, the app policy stops allowing ping
        delta = [b.ipset_delta("s:front", added=[PODS["ns/db"]]),
                 b.policy("app", namespace="ns", inbound=[
                     b.rule("allow", protocol="tcp", src_ip_set_ids=["s:front"],
                            dst_named_port_ip_set_ids=["n:http"])],
                     outbound=[b.rule("allow")])]
        writes_before = agent.state()["driver_status"]["api_writes"]
        shim.send(delta)
        for m in delta:
            state.apply(m)
        wait_for(lambda: agent.state()["driver_status"]["api_writes"] > writes_before, what="delta applied")
        wait_for(lambda: connectivity_matches(sim_target, interfaces, state) == [], timeout=5,
                 what="connectivity after the delta")
        after: list[int] = []
        connectivity_matches(sim_target, interfaces, state, after)
        assert after[0] != made[0], "the delta changed what connects"
        assert agent.state()["last_apply"]["ok"]
    finally:
        shim.close()
