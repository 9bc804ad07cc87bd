"""Faults on a real VPP, with real flows probed all the while (cases.web_probes: some the policy
admits, some it denies, both directions, pod to pod and pod to peer).

Whatever breaks, a flow the policy denies must never get through, at any moment; what recovers,
and how fast, is measured (printed; the figures are in docs/vpp-driver.md, "Faults on a real VPP").

- VPP killed with SIGKILL and restarted: the agent reports every endpoint "error" to Felix while
  VPP is gone, re-creates the pods' interfaces (drop-everything until their ACLs are bound),
  re-programs the policy, and reports "up" again.
- The agent killed with SIGKILL and restarted: VPP keeps forwarding meanwhile; the new agent's
  resync against a VPP that already matches writes nothing.
- A live swap vpp -> iptables -> vpp: the VPP pods are isolated while the kernel driver drives
  (docs/vpp-driver.md, "Faults and statuses"), and come back with the swap back.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agentproc import wait_for
from tests.realvpp import PrivateVpp, RealVpp
from tests.realvpp.cases import POD_A, POD_B, expected, web_objects, web_probes
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.traffic import Captures, Conversation, Prober
from vppagent.server.client import set_driver

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
PODS_UP = {POD_A: "up", POD_B: "up"}


@pytest.fixture
def prober(agent: VppAgentProcess, lab: PodLab) -> Iterator[Prober]:
    """The web policy in force, both pods up as Felix sees them, and probes running."""
    agent.move_to(web_objects())
    assert agent.shim is not None
    shim = agent.shim
    wait_for(lambda: shim.statuses() == PODS_UP, timeout=20, what=f"pods up on fd 4: {shim.statuses()}")
    netns_of = lab.pod_netns()
    probes = web_probes(netns_of, lab.peer)
    lab.peer_owns(str(a) for p in probes for a in (p.packet.src, p.packet.dst) if str(a) not in netns_of)
    captures = Captures([*sorted(set(netns_of.values())), lab.peer])
    state = agent.felix_state
    running = Prober(probes, captures, lambda pkt: expected(state, pkt)).start()
    verdicts = [running.allowed(p.packet) for p in probes]
    assert any(verdicts) and not all(verdicts), f"the probes must be admitted and denied alike: {verdicts}"
    try:
        running.wait_healthy(after=0, timeout=20)
        yield running
    finally:
        running.stop()
        captures.close()
    assert running.admitted_denied() == [], "denied flows got through"


def statuses(agent: VppAgentProcess) -> dict[str, str]:
    assert agent.shim is not None
    return agent.shim.statuses()


def test_vpp_killed_and_restarted(vpp_process: PrivateVpp, vpp: RealVpp, lab: PodLab, agent: VppAgentProcess,
                                  prober: Prober) -> None:
    killed = time.monotonic()
    vpp_process.crash()
    wait_for(lambda: statuses(agent) == {POD_A: "error", POD_B: "error"}, timeout=30,
             what=f"endpoints in error on fd 4 while VPP is gone: {statuses(agent)}")
    error_after = time.monotonic() - killed
    assert agent.state()["endpoints"]["error"] == 2
    vpp_process.restart()
    restarted = time.monotonic()
    lab.attach_peer(vpp)  # the node's own link: VPP forgot it, and it is not the agent's
    wait_for(lambda: statuses(agent) == PODS_UP, timeout=60, what=f"pods up again: {statuses(agent)}")
    up_after = time.monotonic() - restarted
    indices = interface_indices(vpp)
    trace = api_trace(vpp)  # everything written to this VPP since it started
    for pod in lab.pods.values():
        name = f"host-{pod.host_ifname}"
        assert name in indices, f"{pod.workload_id} re-attached"
        vpp.interrupt_mode(name)
        # The re-created interface forwards nothing before both of its ACLs are bound: it stays
        # admin down until then (and af_packet interfaces start down).
        bound = first(trace, "acl_interface_set_acl_list", indices[name], lambda f: f.get("count") == "2")
        up = first(trace, "sw_interface_set_flags", indices[name], lambda f: "ADMIN_UP" in f.get("flags", ""))
        assert bound is not None and up is not None and bound < up, (name, bound, up)
    healthy = prober.wait_healthy(after=restarted, timeout=60)
    print(f"VPP SIGKILL: endpoints 'error' after {error_after:.2f} s; VPP back (ready) "
          f"{restarted - killed:.2f} s after the kill; pods 'up' {up_after:.2f} s after the restart; flows as "
          f"the policy says from the round starting {healthy.started - restarted:.2f} s after it; "
          f"{len(prober.rounds)} rounds, none admitting a denied flow")
    report = agent.state()
    assert report["driver_status"]["pod_interfaces"] == 2
    assert report["driver_status"]["connected"] is True


def interface_indices(vpp: RealVpp) -> dict[str, int]:
    rows = (line.split() for line in vpp.cli("show interface").splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) > 2 and row[1].isdigit()}


def api_trace(vpp: RealVpp) -> list[tuple[str, dict[str, str]]]:
    """The API messages VPP received, in order (``api trace dump``): name and top-level fields."""
    messages: list[tuple[str, dict[str, str]]] = []
    for line in vpp.cli("api trace dump").splitlines():
        if line.startswith("vl_api_") and line.rstrip().endswith("_t:"):
            messages.append((line.rstrip()[len("vl_api_"):-len("_t:")], {}))
        elif messages and line.startswith("  ") and ":" in line:
            key, _, value = line.strip().partition(":")
            messages[-1][1].setdefault(key, value.strip())
    return messages


def first(trace: list[tuple[str, dict[str, str]]], name: str, sw_if_index: int,
          match: Callable[[dict[str, str]], bool]) -> int | None:
    """Where in `trace` the first `name` message for the interface that `match`es is."""
    return next((i for i, (n, fields) in enumerate(trace)
                 if n == name and fields.get("sw_if_index") == str(sw_if_index) and match(fields)), None)


def test_agent_killed_and_restarted_resync_writes_nothing(agent: VppAgentProcess, prober: Prober) -> None:
    writes_before = agent.state()["driver_status"]["api_writes"]
    assert writes_before > 0
    agent.kill()
    assert agent.shim is not None
    agent.shim.close()
    agent.shim = None
    killed = time.monotonic()
    prober.wait_healthy(after=killed, timeout=20)  # VPP forwards as programmed with nobody driving it
    agent.start()
    agent.start_felix()
    report: dict[str, Any] = agent.move_to(agent.objects)  # Felix's snapshot to the new agent
    assert report["last_apply"]["full_resync"] is True and report["last_apply"]["ok"] is True, report["last_apply"]
    assert report["last_apply"]["writes"] == 0, f"resync wrote to a VPP that matched: {report['last_apply']}"
    assert report["driver_status"]["api_writes"] == 0, report["driver_status"]
    wait_for(lambda: statuses(agent) == PODS_UP, timeout=20, what=f"pods up after the restart: {statuses(agent)}")
    restarted = time.monotonic()
    prober.wait_healthy(after=restarted, timeout=20)
    unhealthy = [prober.describe(r) for r in prober.rounds if not prober.healthy(r)]
    print(f"agent SIGKILL + restart: resync wrote 0; {len(prober.rounds)} rounds, unhealthy: {unhealthy}")
    assert unhealthy == [], "flows broke although VPP was never touched"


@pytest.mark.skipif(shutil.which("ipset") is None or shutil.which("iptables-restore") is None,
                    reason="the iptables driver needs ipset and iptables-restore")
def test_live_swap_vpp_iptables_vpp(agent: VppAgentProcess, lab: PodLab, prober: Prober, reclassify_off: None) -> None:
    """With reclassify-sessions off (Felix's rule: the established connection outlives the pods'
    drop-everything ACL under the kernel driver; with it on, that ACL cuts it at the client's next
    packet). The VPP driver swapped back sets it on again."""
    lab.kernel_links(["calipoda", "calipodb"])  # Felix's endpoint names (cases.web_objects)
    pod = lab.pods[POD_A]
    lab.peer_owns(["10.65.1.5"])
    with Conversation(lab.peer, "10.65.1.5", pod.netns, pod.address, 8080) as established:
        swap_out = time.monotonic()
        reply = set_driver(agent.socket, "iptables")
        to_iptables = time.monotonic() - swap_out
        assert reply.ok, reply.error
        assert "stay in VPP isolated" in reply.error, "the swap says the VPP pods are cut off"
        assert agent.state()["driver"] == "iptables"
        under_iptables = wait_for(lambda: [r for r in prober.rounds if r.started > swap_out + to_iptables][:2]
                                  if len([r for r in prober.rounds if r.started > swap_out + to_iptables]) >= 2
                                  else None, timeout=20, what="two rounds under the kernel driver")
        established.exchange("under iptables")
        swap_back = time.monotonic()
        reply = set_driver(agent.socket, "vpp")
        to_vpp = time.monotonic() - swap_back
        assert reply.ok, reply.error
        assert agent.state()["driver"] == "vpp"
        healthy = prober.wait_healthy(after=swap_back, timeout=30)
        established.exchange("back on vpp")
    wait_for(lambda: statuses(agent) == PODS_UP, timeout=20, what=f"pods up after the swap back: {statuses(agent)}")
    broken = [r for r in under_iptables if not prober.healthy(r)]
    assert broken, f"new flows to and from VPP pods go on under the kernel driver: {under_iptables}"
    print(f"swap vpp->iptables {to_iptables:.2f} s, iptables->vpp {to_vpp:.2f} s; new flows admitted by the policy "
          f"failed in {len(broken)}/{len(under_iptables)} rounds under iptables and worked again from the round "
          f"starting {healthy.started - swap_back:.2f} s after the swap back; an established TCP connection "
          "kept working throughout")
