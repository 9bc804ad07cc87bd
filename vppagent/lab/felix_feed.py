"""What Felix would send each node for a scenario snapshot, and the deltas between snapshots.

Per node, Felix sends: its config (with FelixHostname), every node's HostMetadata, the IPAM pool,
a route per IPAM block (LOCAL_WORKLOAD for its own, REMOTE_WORKLOAD for the others'), a route per
local pod, and only the IP sets, policies and profiles its local endpoints use; then its local
host and workload endpoints. Between steps it sends updates for what changed (an IP set as an
IPSetDeltaUpdate), then removals once nothing references them (felix/calc ordering).

Every message sent is also folded into a `DataplaneState` per node: the reference evaluator's
view of that node is exactly what that node's agent was told.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders
from vppagent.lab.scenario import ClusterObjects, Scenario
from vppagent.lab.scenario_objects import Peer, Policy, Rule
from vppagent.state.ipset import IPSetType, canonical_member
from vppagent.state.model import DataplaneState, WorkloadKey

# Felix's flush order: what is referenced goes first; removals run in the reverse order.
ORDER = ("config", "host", "pool", "ipset", "profile", "policy", "hep", "wep", "route")
Key = tuple[str, str]

BASE_FELIX_CONFIG = {
    "InterfacePrefix": "cali",
    # REJECT makes a denied probe fail at once (ICMP unreachable) instead of after its timeout.
    "IptablesFilterDenyAction": "REJECT",
}


def workload_key(scenario: Scenario, pod_name: str) -> WorkloadKey:
    pod = scenario.pod(pod_name)
    return WorkloadKey("k8s", f"{pod.namespace}/{pod.name}", "eth0")


def _ports(texts: list[str]) -> list[tuple[int, int]]:
    out = []
    for text in texts:
        first, _, last = text.partition("-")
        out.append((int(first), int(last or first)))
    return out


def _rank(key: Key) -> int:
    return ORDER.index(key[0])


@dataclass
class NodeFeed:
    """One node's Felix: the messages it has sent so far, folded into `state`."""

    scenario: Scenario
    node: str
    interfaces: Mapping[str, str]  # pod name -> host-side interface (from CNI Add)
    sent: dict[Key, felix.ToDataplane] = field(default_factory=dict)
    state: DataplaneState = field(default_factory=DataplaneState)

    # -- what this node should hold ------------------------------------------------------------
    def desired(self, objects: ClusterObjects) -> dict[Key, felix.ToDataplane]:
        sc = self.scenario
        out: dict[Key, felix.ToDataplane] = {
            ("config", ""): builders.config({**BASE_FELIX_CONFIG, **sc.felix_config, "FelixHostname": self.node}),
            ("pool", str(sc.pool)): felix.ToDataplane(ipam_pool_update=felix.IPAMPoolUpdate(
                id=str(sc.pool), pool=felix.IPAMPool(cidr=str(sc.pool), ipip_mode="Never", vxlan_mode="Never"))),
        }
        for node in sc.nodes:
            address = str(sc.node_address(node.name))
            out[("host", node.name)] = felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
                hostname=node.name, ipv4_addr=address, labels=node.labels))
            block = str(sc.node_block(node.name))
            local = node.name == self.node
            out[("route", block)] = builders.route(  # the pool is unencapsulated: NO_ENCAP, as Felix says
                block, felix.LOCAL_WORKLOAD if local else felix.REMOTE_WORKLOAD, node.name, address, felix.NO_ENCAP)
        local_pods = next(n for n in sc.nodes if n.name == self.node).pods
        local_heps = [h for h in objects.host_endpoints.values() if h.node == self.node]
        used_policies = [p for p in objects.policies.values()
                         if any(self._applies(p, pod.name) for pod in local_pods)
                         or any(self._applies(p, h.name) for h in local_heps)]
        used_profiles = sorted({name for pod in local_pods for name in sc.pod_profiles_of(pod)}
                               | {name for h in local_heps for name in h.profiles})
        used_sets: set[str] = set()
        for policy in used_policies:
            out[("policy", policy.name)] = builders.policy(
                policy.name, [self._rule(r, used_sets) for r in policy.ingress or []],
                [self._rule(r, used_sets) for r in policy.egress or []], tier=policy.tier)
        for name in used_profiles:
            profile = objects.profiles[name]
            out[("profile", name)] = builders.profile(
                name, [self._rule(r, used_sets) for r in profile.ingress],
                [self._rule(r, used_sets) for r in profile.egress])
        for set_name in sorted(used_sets):
            out[("ipset", set_name)] = builders.ipset(set_name, self._members(objects.ipsets[set_name]), "net")
        for hep in local_heps:
            forward = [p for p in used_policies if p.apply_on_forward]
            out[("hep", hep.name)] = builders.host_endpoint(
                hep.name, hep.interface, tiers=self._tiers(objects, hep.name), profiles=hep.profiles,
                forward_tiers=self._tiers(objects, hep.name, only=forward))
        for pod in local_pods:
            key = workload_key(sc, pod.name)
            address = f"{sc.pod_address(pod.name)}/32"
            out[("wep", key.workload_id)] = builders.workload(
                key.workload_id, self.interfaces[pod.name], ipv4=[address], tiers=self._tiers(objects, pod.name),
                profiles=sc.pod_profiles_of(pod))
            out[("route", address)] = felix.ToDataplane(route_update=felix.RouteUpdate(
                types=felix.LOCAL_WORKLOAD, dst=address, dst_node_name=self.node, local_workload=True))
        return out

    def _applies(self, policy: Policy, target: str) -> bool:
        if policy.applies_to == "all":
            return target in self.interfaces  # every pod (all have interfaces), not host endpoints
        return target in policy.applies_to

    def _tiers(self, objects: ClusterObjects, target: str, only: list[Policy] | None = None) -> list[felix.TierInfo]:
        """Felix's TierInfo list for an endpoint: tiers in order, each with the policies that
        apply to it per direction; tiers with none are left out."""
        infos = []
        for tier in objects.ordered_tiers():
            chosen = [p for p in objects.ordered_policies(tier.name) if self._applies(p, target)
                      and (only is None or p in only)]
            ingress = [p.name for p in chosen if p.ingress is not None]
            egress = [p.name for p in chosen if p.egress is not None]
            if ingress or egress:
                infos.append(builders.tier(tier.name, ingress, egress, tier.default_action))
        return infos

    def _members(self, members: list[str]) -> list[str]:
        out = []
        for member in members:
            try:
                out.append(str(ipaddress.ip_network(member, strict=False)))
            except ValueError:
                out.append(f"{self.scenario.pod_address(member)}/32")
        return sorted(set(out))

    def _side(self, peer: Peer, prefix: str, used_sets: set[str]) -> dict[str, object]:
        pods = [f"{self.scenario.pod_address(p)}/32" for p in peer.pods]
        not_pods = [f"{self.scenario.pod_address(p)}/32" for p in peer.not_pods]
        used_sets.update(peer.ipsets, peer.not_ipsets)
        fields: dict[str, object] = {
            f"{prefix}_net": [*pods, *(str(n) for n in peer.nets)],
            f"not_{prefix}_net": [*not_pods, *(str(n) for n in peer.not_nets)],
            f"{prefix}_ip_set_ids": list(peer.ipsets),
            f"not_{prefix}_ip_set_ids": list(peer.not_ipsets),
            f"{prefix}_ports": _ports(peer.ports),
            f"not_{prefix}_ports": _ports(peer.not_ports),
        }
        return {k: v for k, v in fields.items() if v}

    def _rule(self, rule: Rule, used_sets: set[str]) -> felix.Rule:
        fields: dict[str, object] = {**self._side(rule.source, "src", used_sets),
                                     **self._side(rule.destination, "dst", used_sets)}
        if rule.protocol is not None:
            fields["protocol"] = rule.protocol
        if rule.not_protocol is not None:
            fields["not_protocol"] = rule.not_protocol
        return builders.rule(rule.action, **fields)

    # -- what to send ----------------------------------------------------------------------------
    def snapshot(self, objects: ClusterObjects) -> list[felix.ToDataplane]:
        """Felix's start of day: everything, then InSync."""
        desired = self.desired(objects)
        messages = [desired[k] for k in sorted(desired, key=lambda k: (_rank(k), k[1]))]
        messages.append(builders.in_sync())
        self.sent = desired
        return self._fold(messages)

    def advance(self, objects: ClusterObjects) -> list[felix.ToDataplane]:
        """The deltas from what was sent to `objects`: updates in order, then removals reversed."""
        desired = self.desired(objects)
        updates: list[felix.ToDataplane] = []
        for key in sorted(desired, key=lambda k: (_rank(k), k[1])):
            old, new = self.sent.get(key), desired[key]
            if old == new:
                continue
            if key[0] == "ipset" and old is not None:
                delta = _ipset_delta(key[1], old, new)
                if delta.ipset_delta_update.added_members or delta.ipset_delta_update.removed_members:
                    updates.append(delta)
            else:
                updates.append(new)
        removals = [_removal(key) for key in sorted(self.sent.keys() - desired.keys(),
                                                     key=lambda k: (-_rank(k), k[1]))]
        self.sent = desired
        return self._fold(updates + removals)

    def _fold(self, messages: list[felix.ToDataplane]) -> list[felix.ToDataplane]:
        for msg in messages:
            self.state.apply(msg)
        return messages


def _members_of(msg: felix.ToDataplane) -> set[str]:
    return {canonical_member(IPSetType.NET, m) for m in msg.ipset_update.members}


def _ipset_delta(set_id: str, old: felix.ToDataplane, new: felix.ToDataplane) -> felix.ToDataplane:
    before, after = _members_of(old), _members_of(new)
    return builders.ipset_delta(set_id, sorted(after - before), sorted(before - after))


def _removal(key: Key) -> felix.ToDataplane:
    kind, name = key
    if kind == "ipset":
        return builders.ipset_remove(name)
    if kind == "policy":
        return builders.policy_remove(name)
    if kind == "profile":
        return builders.profile_remove(name)
    if kind == "hep":
        return felix.ToDataplane(host_endpoint_remove=felix.HostEndpointRemove(id=felix.HostEndpointID(
            endpoint_id=name)))
    if kind == "wep":
        return builders.workload_remove(name)
    if kind == "route":
        return felix.ToDataplane(route_remove=felix.RouteRemove(dst=name))
    if kind == "host":
        return felix.ToDataplane(host_metadata_remove=felix.HostMetadataRemove(hostname=name))
    if kind == "pool":
        return felix.ToDataplane(ipam_pool_remove=felix.IPAMPoolRemove(id=name))
    raise ValueError(f"Felix never removes {kind}")
