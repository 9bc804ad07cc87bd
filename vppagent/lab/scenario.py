"""A lab scenario: nodes with pods, the policy objects Felix would send, and steps that change them.

The YAML is written by people, so everything is named (pods, ipsets, policies) and addresses are
derived: node N (1-based) owns block N of the pool as a /24, its pods get .2, .3, … of it, and its
uplink is 198.18.0.N; with Services its VPP's source-NAT address is 198.18.0.(200+N).
`Scenario.snapshots()` replays the steps on the declared objects and checks every reference at
every step, so a broken scenario fails at load time with the step named.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from vppagent.command_line import UsageError, describe_yaml_error, read_text_file
from vppagent.lab.scenario_objects import (
    DEFAULT_TIER,
    STRICT,
    BgpSection,
    Expectation,
    HostEndpoint,
    IPSetChange,
    Node,
    ObjectName,
    Pod,
    Policy,
    Profile,
    Service,
    Step,
    StepApply,
    StepRemove,
    Tier,
    bgp_section,
    service_key,
)

NODE_SUBNET = ipaddress.IPv4Network("198.18.0.0/24")  # RFC 2544 benchmarking range, never routed
NODE_GATEWAY = "198.18.0.254"  # not a real host: a default route makes proxy ARP answer (env notes §2)
# A host on the nodes' network that is no node (nodes are .1-.200): the client of NodePort probes.
OUTSIDE_ADDRESS = ipaddress.IPv4Address("198.18.0.250")
BLOCK_PREFIX = 24
# Node N's source-NAT address for Services (docs/services.md, "Source NAT"): VPP's alone, on the nodes'
# network (the driver makes VPP answer ARP for it on the uplink), free: nodes are .1-.200, the outside
# host .250, the gateway .254. So a scenario with Services has at most 49 nodes (.201-.249).
SNAT_OFFSET = 200
MAX_SERVICE_NODES = int(OUTSIDE_ADDRESS) - int(NODE_SUBNET.network_address) - SNAT_OFFSET - 1


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the file, step and object."""


@dataclass
class ClusterObjects:
    """The policy objects in force at one point of the scenario (what Felix's datastore holds)."""

    tiers: dict[str, Tier] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    host_endpoints: dict[str, HostEndpoint] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)  # by NAMESPACE/NAME

    def copy(self) -> ClusterObjects:
        return ClusterObjects(dict(self.tiers), {k: list(v) for k, v in self.ipsets.items()},
                              dict(self.profiles), dict(self.policies), dict(self.host_endpoints),
                              dict(self.services))

    def ordered_tiers(self) -> list[Tier]:
        tiers = dict(self.tiers)
        tiers.setdefault(DEFAULT_TIER, Tier(name=DEFAULT_TIER))
        return sorted(tiers.values(), key=lambda t: (t.order is None, t.order or 0.0, t.name))

    def ordered_policies(self, tier: str) -> list[Policy]:
        chosen = [p for p in self.policies.values() if p.tier == tier]
        return sorted(chosen, key=lambda p: (p.order is None, p.order or 0.0, p.name))


@dataclass(frozen=True)
class Snapshot:
    """What the lab programs and probes for one step (step 0 is the initial state)."""

    index: int
    name: str
    objects: ClusterObjects
    expectations: tuple[Expectation, ...]
    ipset_changes: dict[str, IPSetChange]


class Scenario(BaseModel):
    model_config = STRICT

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    pool: ipaddress.IPv4Network = ipaddress.IPv4Network("10.65.0.0/16")
    felix_config: dict[str, str] = {}
    bgp: BgpSection = {}  # the `bgp:` section of every agent's config (timers, mesh, password, ...)
    pod_profiles: list[ObjectName] = []
    nodes: list[Node] = Field(min_length=1, max_length=200)
    tiers: list[Tier] = []
    ipsets: dict[ObjectName, list[str]] = {}
    profiles: list[Profile] = []
    policies: list[Policy] = []
    host_endpoints: list[HostEndpoint] = []
    services: list[Service] = []
    expect: list[Expectation] = []
    steps: list[Step] = []

    # -- derived addressing ------------------------------------------------------------------
    def pods(self) -> list[tuple[Node, Pod]]:
        return [(node, pod) for node in self.nodes for pod in node.pods]

    def node_of(self, pod_name: str) -> Node:
        return next(node for node, pod in self.pods() if pod.name == pod_name)

    def pod(self, pod_name: str) -> Pod:
        return next(pod for _, pod in self.pods() if pod.name == pod_name)

    def node_index(self, node_name: str) -> int:
        """1-based."""
        return next(i for i, node in enumerate(self.nodes, 1) if node.name == node_name)

    def node_address(self, node_name: str) -> ipaddress.IPv4Address:
        return NODE_SUBNET.network_address + self.node_index(node_name)

    def snat_address(self, node_name: str) -> ipaddress.IPv4Address:
        """The source-NAT address of the node's VPP: NodePort flows it sends to another node's backend
        arrive there from this address."""
        return NODE_SUBNET.network_address + SNAT_OFFSET + self.node_index(node_name)

    def node_block(self, node_name: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(self.pool.network_address) + (self.node_index(node_name) << 8),
                                      BLOCK_PREFIX))

    def pod_address(self, pod_name: str) -> ipaddress.IPv4Address:
        node = self.node_of(pod_name)
        position = next(i for i, pod in enumerate(node.pods) if pod.name == pod_name)
        return self.node_block(node.name).network_address + 2 + position

    def bgp_of(self, node: Node) -> dict[str, Any]:
        merged = {**self.bgp, **node.bgp}
        bgp_section(merged)
        return merged

    def pod_profiles_of(self, pod: Pod) -> list[str]:
        return list(pod.profiles) if pod.profiles is not None else list(self.pod_profiles)

    def has_services(self) -> bool:
        """Whether any step has a Service (such a scenario needs the VPP driver)."""
        return bool(self.services) or any(step.apply.services for step in self.steps)

    # -- validation ------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _check(self) -> Scenario:
        self._check_layout()
        for _ in self.snapshots():  # replays every step and checks every reference
            pass
        return self

    def _check_layout(self) -> None:
        nodes = [n.name for n in self.nodes]
        _unique(nodes, "node")
        _unique([p.name for _, p in self.pods()], "pod")
        if len(self.nodes) >= NODE_SUBNET.num_addresses - 2:
            raise ValueError(f"at most {NODE_SUBNET.num_addresses - 3} nodes")
        if self.has_services() and len(self.nodes) > MAX_SERVICE_NODES:
            first = NODE_SUBNET.network_address + SNAT_OFFSET
            raise ValueError(f"at most {MAX_SERVICE_NODES} nodes with Services (node N's source-NAT address is "
                             f"{first} + N, below the outside host {OUTSIDE_ADDRESS})")
        if self.pool.prefixlen > BLOCK_PREFIX - 1 or (1 << (BLOCK_PREFIX - self.pool.prefixlen)) <= len(nodes):
            raise ValueError(f"pool {self.pool} has too few /{BLOCK_PREFIX} blocks for {len(nodes)} nodes")
        for node in self.nodes:
            self.bgp_of(node)
            if len(node.pods) > 250:
                raise ValueError(f"node {node.name}: at most 250 pods per node")
            for pod in node.pods:
                _unique([str(p) for p in pod.ports], f"port of pod {pod.name}")
        if any(t.name == DEFAULT_TIER and t.default_action == "Pass" for t in self.tiers):
            raise ValueError("the default tier cannot end with Pass")  # Calico refuses it too

    def snapshots(self) -> Iterator[Snapshot]:
        objects = ClusterObjects()
        initial = StepApply(tiers=self.tiers, ipsets=self.ipsets, profiles=self.profiles,
                            policies=self.policies, host_endpoints=self.host_endpoints, services=self.services)
        _apply(objects, initial, "the initial objects")
        self._check_objects(objects, "initial state", self.expect)
        yield Snapshot(0, "initial", objects.copy(), tuple(self.expect), {})
        for index, step in enumerate(self.steps, 1):
            where = f"step {index} ({step.name})"
            _apply(objects, step.apply, where)
            for set_name, change in step.change.ipsets.items():
                if set_name not in objects.ipsets:
                    raise ValueError(f"{where}: change of unknown ipset {set_name}")
                members = [m for m in objects.ipsets[set_name] if m not in change.remove]
                objects.ipsets[set_name] = members + [m for m in change.add if m not in members]
            for reference, backends in step.change.services.items():
                key = service_key(reference)
                if key not in objects.services:
                    raise ValueError(f"{where}: change of unknown service {key}")
                service = objects.services[key]
                kept = [b for b in service.backends if b not in backends.remove]
                objects.services[key] = service.model_copy(
                    update={"backends": kept + [b for b in backends.add if b not in kept]})
            _remove(objects, step.remove, where)
            self._check_objects(objects, where, step.expect)
            yield Snapshot(index, step.name, objects.copy(), tuple(step.expect), dict(step.change.ipsets))

    def _check_objects(self, objects: ClusterObjects, where: str, expectations: list[Expectation]) -> None:
        pods = {p.name for _, p in self.pods()}
        nodes = {n.name for n in self.nodes}

        def need(kind: str, name: str, known: object) -> None:
            if name not in known:  # type: ignore[operator]
                raise ValueError(f"{where}: unknown {kind} {name!r}")

        for set_name, members in objects.ipsets.items():
            for member in members:
                if not _is_cidr(member):
                    need(f"pod (or CIDR) in ipset {set_name}", member, pods)
        for pod_name in pods:
            for profile in self.pod_profiles_of(self.pod(pod_name)):
                need(f"profile of pod {pod_name}", profile, objects.profiles)
        for hep in objects.host_endpoints.values():
            need(f"node of host endpoint {hep.name}", hep.node, nodes)
            for profile in hep.profiles:
                need(f"profile of host endpoint {hep.name}", profile, objects.profiles)
        if len({(h.node, h.interface) for h in objects.host_endpoints.values()}) != len(objects.host_endpoints):
            raise ValueError(f"{where}: two host endpoints on the same node interface")
        if set(objects.host_endpoints) & pods:
            raise ValueError(f"{where}: host endpoints and pods share a name")
        for policy in objects.policies.values():
            need(f"tier of policy {policy.name}", policy.tier, {*objects.tiers, DEFAULT_TIER})
            if policy.applies_to != "all":
                for target in policy.applies_to:
                    need(f"pod or host endpoint in applies_to of {policy.name}", target,
                         pods | set(objects.host_endpoints))
        rule_owners = [(f"policy {p.name}", [*(p.ingress or []), *(p.egress or [])]) for p in objects.policies.values()]
        rule_owners += [(f"profile {p.name}", [*p.ingress, *p.egress]) for p in objects.profiles.values()]
        for owner, rules in rule_owners:
            for rule in rules:
                for side in (rule.source, rule.destination):
                    for pod_name in side.pod_names():
                        need(f"pod in a rule of {owner}", pod_name, pods)
                    for set_name in side.ipset_names():
                        need(f"ipset in a rule of {owner}", set_name, objects.ipsets)
        self._check_services(objects, where)
        for exp in expectations:
            need("pod in expect", exp.source, pods)
            need("pod in expect", exp.target, pods)
            if exp.port not in self.pod(exp.target).ports:
                raise ValueError(f"{where}: expect {exp.source} -> {exp.target} {exp.port}: "
                                 f"{exp.target} does not listen on {exp.port}")

    def _check_services(self, objects: ClusterObjects, where: str) -> None:
        taken: dict[object, str] = {}  # cluster IPs and node ports: one Service each

        def claim(thing: object, what: str, owner: str) -> None:
            if thing in taken and taken[thing] != owner:
                raise ValueError(f"{where}: service {owner}: {what} is service {taken[thing]}'s already")
            taken[thing] = owner

        for key, service in objects.services.items():
            ip = service.cluster_ip
            if ip in self.pool or ip in NODE_SUBNET:
                raise ValueError(f"{where}: service {key}: cluster IP {ip} is inside the pod pool {self.pool} "
                                 f"or the nodes' network {NODE_SUBNET}")
            claim(ip, f"cluster IP {ip}", key)
            for port in service.ports:
                if port.node_port is not None:
                    claim((port.protocol, port.node_port), f"node port {port.protocol}/{port.node_port}", key)
            for backend in service.backends:
                if not any(pod.name == backend for _, pod in self.pods()):
                    raise ValueError(f"{where}: service {key}: unknown backend pod {backend!r}")
                listens = self.pod(backend).ports
                for port in service.ports:
                    if port.target not in listens:
                        raise ValueError(f"{where}: service {key}: backend {backend} does not listen on "
                                         f"{port.target} (port {port.label()})")


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is listed twice")
        seen.add(name)


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _apply(objects: ClusterObjects, apply: StepApply, where: str) -> None:
    for what, items in (("tier", apply.tiers), ("profile", apply.profiles), ("policy", apply.policies),
                        ("host endpoint", apply.host_endpoints)):
        _unique([i.name for i in items], f"{where}: {what}")
    _unique([s.key for s in apply.services], f"{where}: service")
    objects.services.update({s.key: s for s in apply.services})
    objects.tiers.update({t.name: t for t in apply.tiers})
    objects.ipsets.update({k: list(v) for k, v in apply.ipsets.items()})
    objects.profiles.update({p.name: p for p in apply.profiles})
    objects.policies.update({p.name: p for p in apply.policies})
    objects.host_endpoints.update({h.name: h for h in apply.host_endpoints})


def _remove(objects: ClusterObjects, remove: StepRemove, where: str) -> None:
    tables: list[tuple[str, dict[str, Any], list[str]]] = [
        ("tier", objects.tiers, remove.tiers), ("ipset", objects.ipsets, remove.ipsets),
        ("profile", objects.profiles, remove.profiles), ("policy", objects.policies, remove.policies),
        ("host endpoint", objects.host_endpoints, remove.host_endpoints),
    ]
    for what, table, names in tables:
        for name in names:
            if name not in table:
                raise ValueError(f"{where}: remove of unknown {what} {name!r}")
            del table[name]
    for reference in remove.services:
        if service_key(reference) not in objects.services:
            raise ValueError(f"{where}: remove of unknown service {service_key(reference)}")
        del objects.services[service_key(reference)]


BUNDLED_SCENARIOS = ("default", "services")  # vppagent/lab/scenarios/NAME.yaml


def load_scenario(path: Path | None = None) -> Scenario:
    """The scenario in `path`, or a bundled one: none given means `default`, and a bundled
    scenario's name that is no file here means that one. ScenarioError with a readable message."""
    if path is None or (str(path) in BUNDLED_SCENARIOS and not path.exists()):
        from importlib.resources import files

        name = "default" if path is None else str(path)
        text = files("vppagent.lab").joinpath(f"scenarios/{name}.yaml").read_text()
        where = f"bundled scenario {name}"
    else:
        try:
            text = read_text_file(path, "scenario")
        except UsageError as exc:
            raise ScenarioError(str(exc)) from None
        where = str(path)
    return parse_scenario(text, where)


def parse_scenario(text: str, where: str = "scenario") -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not valid YAML: {describe_yaml_error(exc)}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a mapping (name, nodes, policies, steps, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{where}: {loc + ': ' if loc else ''}{msg}")
        raise ScenarioError("\n".join(lines)) from None
