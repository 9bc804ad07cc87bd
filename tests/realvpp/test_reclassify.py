"""The session rule with `reclassify-sessions` on (the driver's default; docs/vpp-driver.md, "The
session rule") on a real VPP 26.06, with a real TCP connection from the peer to pod-a:8080: after a
change of pod-a's policy, the connection's next packet from the client (the direction that made its
session) is judged again by the new policy: a change that still allows it keeps the connection, a
change that denies it stops it there, while pod-a's data to the client still passes before that
packet. The agent sets the setting again after VPP restarts. With it off: tests/realvpp/test_packets.py
(`test_established_flow_survives_an_in_place_policy_change`)."""

from __future__ import annotations

import socket

import pytest

from tests.agentproc import wait_for
from tests.realvpp import PrivateVpp, RealVpp
from tests.realvpp.cases import CLIENTS, CLIENTS6, POD_A, POD_B, PODS, PODS6, pod_b_messages
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.traffic import Conversation
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
CLIENT = "10.65.1.5"  # in CLIENTS
SHOWN_ON = "Reclassify sessions: 1"


def web(ports: list[int]) -> list[felix.ToDataplane]:
    """pod-a admits TCP to `ports` from CLIENTS (and CLIENTS6) and sends nothing of its own: only a
    reflect session lets its answers out. pod-b open."""
    policy = b.policy("web", namespace="default", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=ports, src_net=[CLIENTS]),
        b.rule("allow", protocol="tcp", dst_ports=ports, src_net=[CLIENTS6])], outbound=[])
    tiers = [b.tier("app", ingress=["web"], egress=["web"], namespace="default")]
    return [policy, b.workload(POD_A, "calipoda", ipv4=[f"{PODS[POD_A]}/32"], ipv6=[f"{PODS6[POD_A]}/128"],
                               tiers=tiers), *pod_b_messages()]


def shown_on(vpp: RealVpp) -> bool:
    return SHOWN_ON in (line.strip() for line in vpp.cli("show acl-plugin sessions").splitlines())


def test_the_agent_turned_it_on(agent: VppAgentProcess, vpp: RealVpp) -> None:
    agent.move_to(web([8080]))
    assert shown_on(vpp)
    assert agent.state()["driver_status"]["reclassify_sessions"] == "on"


def test_a_flow_the_new_policy_allows_goes_on_and_one_it_denies_stops(agent: VppAgentProcess, lab: PodLab) -> None:
    pod = lab.pods[POD_A]
    lab.peer_owns([CLIENT])
    agent.move_to(web([8080]))
    with Conversation(lab.peer, CLIENT, pod.netns, pod.address, 8080) as flow:
        agent.move_to(web([8080, 8081]))  # pod-a's ACL replaced in place, still admitting the flow
        flow.exchange("after a change that still allows it")
        flow.exchange("again")
        agent.move_to(web([8081]))  # replaced in place again: tcp/8080 is no longer admitted
        flow.conn.sendall(b"server before the client sends\n")
        assert flow.client.recv(100) == b"server before the client sends\n", (
            "pod-a's side passes on the stale session until the client sends")
        flow.client.settimeout(1.0)
        flow.conn.settimeout(1.0)
        flow.client.sendall(b"client\n")
        with pytest.raises(socket.timeout):
            flow.conn.recv(100)  # judged again by the new policy: dropped
        flow.conn.sendall(b"server after\n")
        with pytest.raises(socket.timeout):
            flow.client.recv(100)  # the session went with the client's packet


def test_the_setting_is_set_again_after_vpp_restarts(vpp_process: PrivateVpp, vpp: RealVpp, lab: PodLab,
                                                     agent: VppAgentProcess) -> None:
    agent.move_to(web([8080]))
    assert agent.shim is not None
    shim = agent.shim
    reconnects = agent.state()["driver_status"]["reconnects"]
    vpp_process.crash()
    vpp_process.restart()
    lab.attach_peer(vpp)

    def back() -> bool:
        return (agent.state()["driver_status"]["reconnects"] > reconnects
                and shim.statuses() == {POD_A: "up", POD_B: "up"})

    wait_for(back, timeout=60, what=f"the agent reconnected and the pods are up again: {shim.statuses()}")
    assert shown_on(vpp), "the agent set it again on the restarted VPP"
    assert agent.state()["driver_status"]["reclassify_sessions"] == "on"
