"""The lab's Services at run time: the API server the agents watch, the host that reaches
NodePorts, and the flows of each step, judged by service_checks.

- The API server (apiserver.py) runs in the lab's process with one listener on 127.0.0.1 inside
  each node's namespace: each agent gets `--services kubernetes --kubeconfig` naming its own
  node's listener, and nothing outside the lab can reach it. Each step publishes the Services in
  force (and their EndpointSlices) as creations, replacements and deletions, so the agents see
  watch events as in a cluster.
- `outside`: a namespace on the fabric (198.18.0.250), the client of NodePort flows.
- A VPP node's kernel shares eth0 with VPP (vpp_nodes.py) and would refuse a NodePort flow
  itself (a TCP reset, an ICMP port unreachable) before VPP answers it; the lab drops the node-port
  range in the node kernel's INPUT on eth0, which then serves BGP only, as the lab needs.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vppagent.lab import service_checks as checks
from vppagent.lab.agents import LabError, NodeAgent, wait_until
from vppagent.lab.apiserver import StandInApiServer
from vppagent.lab.kube_objects import expected_rows, kube_objects
from vppagent.lab.probe import Flow, FlowResult, send_flow
from vppagent.lab.report import NO_ANSWER, ServiceCell
from vppagent.lab.scenario import ClusterObjects, Scenario
from vppagent.lab.scenario_objects import NODE_PORTS
from vppagent.lab.topology import NETNS_DIR, Topology
from vppagent.state.model import DataplaneState

# Service flows take their source ports from here, one each, so no two flows of a run share a
# 5-tuple (below the kernel's ephemeral range, which pod probes use).
FIRST_SOURCE_PORT, LAST_SOURCE_PORT = 10000, 29999
# How long a flow the oracle expects answered may take (one that comes back returns at once; flows
# nothing may answer keep the probe timeout). VPP drops the packet that makes it resolve a neighbour
# (ip4-glean): the first answers a node sends to another node's source-NAT address were lost while
# ARP resolved it (seen: 5 of 8 SYN-ACKs, `show errors`: glean "ARP requests sent" 1, "throttled" 4),
# and TCP sends them again after 1 s, the lab's probe timeout.
ANSWER_WINDOW = 5.0


@dataclass(frozen=True)
class PlannedFlow:
    frontend: checks.Frontend
    source: str  # a pod or checks.OUTSIDE
    flow: Flow
    expected: checks.Outcomes  # what the oracle allows for this flow (its source port is the lab's)


class LabServices:
    def __init__(self, scenario: Scenario, topology: Topology, workdir: Path) -> None:
        self.scenario, self.topology, self.workdir = scenario, topology, workdir
        self.api = StandInApiServer()
        self.published: dict[str, dict[str, dict[str, Any]]] = {}
        self.kubeconfigs: dict[str, Path] = {}
        self._next_port = FIRST_SOURCE_PORT

    # -- set-up ----------------------------------------------------------------------------------
    def start(self, first: ClusterObjects) -> None:
        """The outside host, and the API server listening in every node (serving `first`)."""
        self.topology.add_outside_host()
        for node in self.scenario.nodes:
            port = self.api.listen(NETNS_DIR / self.topology.node_ns(node.name))
            node_dir = self.workdir / node.name
            node_dir.mkdir(parents=True, exist_ok=True)
            self.kubeconfigs[node.name] = self.api.write_kubeconfig(node_dir / "kubeconfig", port)
        self.publish(first)

    def agent_args(self, node: str) -> list[str]:
        """The node's own listener of the API server, and its VPP's source-NAT address (the driver
        gives it to cnat and makes VPP answer ARP for it on the uplink: nothing for the lab to set)."""
        return ["--services", "kubernetes", "--kubeconfig", str(self.kubeconfigs[node]),
                "--service-snat-ipv4", str(self.scenario.snat_address(node))]

    def quiet_node_kernels(self) -> None:
        """Each VPP node's kernel drops the node-port range arriving on eth0 (module docstring)."""
        iptables = shutil.which("iptables") or shutil.which("iptables-nft") or shutil.which("iptables-legacy")
        if iptables is None:
            raise LabError("Services on VPP nodes need iptables in the node namespaces (apt-get install iptables)")
        ports = f"{NODE_PORTS.start}:{NODE_PORTS.stop - 1}"
        for node in self.scenario.nodes:
            for protocol in ("tcp", "udp"):
                argv = ["ip", "netns", "exec", self.topology.node_ns(node.name), iptables, "-w", "-A", "INPUT",
                        "-i", "eth0", "-p", protocol, "--dport", ports, "-j", "DROP"]
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
                if proc.returncode != 0:
                    raise LabError(f"{node.name}: {' '.join(argv[4:])}: {proc.stderr.strip()}")

    def stop(self) -> None:
        self.api.stop()

    # -- each step -------------------------------------------------------------------------------
    def publish(self, objects: ClusterObjects) -> None:
        """The API server holds exactly the Services of `objects` and their EndpointSlices."""
        desired = kube_objects(self.scenario, objects)
        for path, wanted in desired.items():
            held = self.published.setdefault(path, {})
            for key, obj in wanted.items():
                if held.get(key) != obj:
                    self.api.put(path, obj)
                    held[key] = obj
            for key in sorted(held.keys() - wanted.keys()):
                namespace, name = key.split("/", 1)
                self.api.delete(path, namespace, name)
                del held[key]

    def wait_programmed(self, agents: Mapping[str, NodeAgent], objects: ClusterObjects,
                        timeout: float = 30.0) -> None:
        """Until every agent reports the Services of `objects` up (in VPP as desired)."""
        for node, agent in agents.items():
            want = expected_rows(self.scenario, objects, node)
            seen: list[Any] = []

            def programmed(agent: NodeAgent = agent, want: list[dict[str, Any]] = want,
                           seen: list[Any] = seen) -> bool:
                report = agent.state()
                seen[:] = [report.get("services"), report.get("services_source")]
                return report.get("services") == want

            try:
                wait_until(programmed, timeout, f"the Services on {node}", interval=0.1)
            except LabError:
                raise LabError(f"the agent on {node} did not program the Services within {timeout:.0f} s: "
                               f"wanted {want}, reports {seen}; {agent.tail()}") from None

    def plan(self, objects: ClusterObjects, previous: ClusterObjects | None,
             states: Mapping[str, DataplaneState]) -> list[PlannedFlow]:
        """The flows of a step: every frontend of the Services in force, and of those the step
        removed (which nothing may answer any more), from each of its clients, each with what the
        oracle expects of it (worked out once: the job's wait and the judgement both use it)."""
        services = dict(objects.services)
        if previous is not None:
            services.update({k: s for k, s in previous.services.items() if k not in services})
        planned = []
        for key in sorted(services):
            service = services[key]
            for frontend in checks.frontends(self.scenario, service):
                for source in checks.clients(self.scenario, service, frontend):
                    netns = (NETNS_DIR / self.topology.outside if source == checks.OUTSIDE
                             else self.topology.pod_netns_path(source))
                    for _ in range(checks.FLOWS_PER_PROBE):
                        flow = Flow(netns, frontend.address, frontend.protocol, frontend.port, self._source_port())
                        expected = checks.outcomes(self.scenario, objects, states, frontend, source, flow.source_port)
                        planned.append(PlannedFlow(frontend, source, flow, expected))
        return planned

    def _source_port(self) -> int:
        if self._next_port > LAST_SOURCE_PORT:
            raise LabError(f"this run used every source port {FIRST_SOURCE_PORT}-{LAST_SOURCE_PORT} for "
                           "Service flows: fewer steps or Services")
        self._next_port += 1
        return self._next_port - 1

    def jobs(self, planned: list[PlannedFlow], timeout: float) -> list[Callable[[], FlowResult]]:
        """A job per flow; one that some backend should answer waits up to ANSWER_WINDOW."""
        return [functools.partial(send_flow, p.flow, max(timeout, ANSWER_WINDOW) if p.expected.answering else timeout)
                for p in planned]

    def judge(self, planned: list[PlannedFlow], results: list[FlowResult],
              objects: ClusterObjects) -> tuple[list[ServiceCell], list[str]]:
        """A cell per client and frontend, and the problems across flows (spread, affinity)."""
        judged: list[checks.JudgedFlow] = []
        grouped: dict[tuple[checks.Frontend, str], list[tuple[checks.Outcomes, str, str | None]]] = {}
        for plan, result in zip(planned, results, strict=True):
            expected = plan.expected
            answered = checks.answered_by(result.answer, plan.frontend, objects.services.get(plan.frontend.service))
            problem = checks.judge(expected, answered, result.detail, checks.source_seen(result.answer))
            judged.append(checks.JudgedFlow(plan.frontend, plan.source, expected, answered))
            grouped.setdefault((plan.frontend, plan.source), []).append(
                (expected, problem or "", answered))
        cells = []
        for (frontend, source), flows in grouped.items():
            expects = {e.expect for e, _, _ in flows}
            answers = Counter(a if a is not None else NO_ANSWER for _, _, a in flows)
            cells.append(ServiceCell(source, frontend.label(), frontend.service,
                                     expects.pop() if len(expects) == 1 else "either", flows[0][0].describe(),
                                     tuple(sorted(answers.items())), tuple(p for _, p, _ in flows if p)))
        return cells, checks.step_problems(judged, objects.services)
