"""The expected verdict of a probe, from the reference evaluator (`vppagent.policy.evaluate`).

A flow between pods on one node is forwarded once: the source's egress and the destination's
ingress chains of that node decide. Between nodes it is forwarded twice, and each node decides
with what its own agent was told: the source node (source egress, then the host endpoint on
its uplink, if any) and the destination node (that host endpoint, then destination ingress).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from vppagent.lab.felix_feed import workload_key
from vppagent.lab.scenario import ClusterObjects, Scenario
from vppagent.lab.scenario_objects import Port
from vppagent.policy.evaluate import Verdict, forward_verdict
from vppagent.policy.model import PROTOCOL_NUMBERS
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState


@dataclass(frozen=True)
class Expected:
    allowed: bool
    reason: str


def leg_allows(verdict: Verdict) -> bool:
    # "none": no Calico chain accepted or denied, so the packet meets the FORWARD chain's own
    # policy, which is ACCEPT in a fresh namespace (nothing else in the lab changes it).
    return verdict.action in ("allow", "none")


def uplink_endpoints(objects: ClusterObjects) -> dict[str, str]:
    """Node -> the evaluator's key of the host endpoint on its uplink (eth0), where there is one."""
    return {h.node: f"hep:{h.name}" for h in objects.host_endpoints.values() if h.interface == "eth0"}


def expected(scenario: Scenario, objects: ClusterObjects, states: Mapping[str, DataplaneState],
             source: str, target: str, port: Port, source_port: int) -> Expected:
    src_node, dst_node = scenario.node_of(source).name, scenario.node_of(target).name
    packet = Packet(PROTOCOL_NUMBERS[port.protocol], ipaddress.ip_address(scenario.pod_address(source)),
                    ipaddress.ip_address(scenario.pod_address(target)), source_port, port.number)
    src_key, dst_key = workload_key(scenario, source), workload_key(scenario, target)
    if src_node == dst_node:
        verdict = forward_verdict(states[src_node], src_key, dst_key, packet)
        return Expected(leg_allows(verdict), f"{src_node}: {verdict.describe()}")
    uplink = uplink_endpoints(objects)
    leaving = forward_verdict(states[src_node], src_key, uplink.get(src_node), packet)
    if not leg_allows(leaving):
        return Expected(False, f"{src_node}: {leaving.describe()}")
    arriving = forward_verdict(states[dst_node], uplink.get(dst_node), dst_key, packet)
    return Expected(leg_allows(arriving), f"{dst_node}: {arriving.describe()}")
