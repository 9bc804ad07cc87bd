"""A lab scenario: nodes with pods, the policy objects Felix would send, and steps that change them.

The YAML is written by people, so everything is named (pods, ipsets, policies) and addresses are
derived: node N (1-based) owns block N of the pool as a /24, its pods get .2, .3, … of it, and its
uplink is 198.18.0.N. `Scenario.snapshots()` replays the steps on the declared objects and checks
every reference at every step, so a broken scenario fails at load time with the step named.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from vppagent.command_line import UsageError, describe_yaml_error, read_text_file

NODE_SUBNET = ipaddress.IPv4Network("198.18.0.0/24")  # RFC 2544 benchmarking range, never routed
NODE_GATEWAY = "198.18.0.254"  # not a real host: a default route makes proxy ARP answer (env notes §2)
BLOCK_PREFIX = 24
DEFAULT_TIER = "default"
PORT_PROTOCOLS = ("tcp", "udp", "sctp")

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_OBJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
PodName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=40)]
# Node names become namespace names (prefix + name) and BGP hostnames.
NodeName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=24)]
ObjectName = Annotated[str, Field(pattern=_OBJECT_NAME, max_length=100)]


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the file, step and object."""


@dataclass(frozen=True, order=True)
class Port:
    protocol: str
    number: int

    def __str__(self) -> str:
        return f"{self.protocol}/{self.number}"


def _parse_port(value: object) -> object:
    """`80` and `"80"` mean tcp/80; `"udp/53"` names the protocol."""
    if isinstance(value, Port):
        return value
    text = str(value).strip().lower()
    proto, _, number = text.rpartition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp") or not number.isdigit() or not 1 <= int(number) <= 65535:
        raise ValueError(f"port {value!r}: write 80, tcp/80 or udp/53 (1-65535)")
    return Port(proto, int(number))


PortSpec = Annotated[Port, BeforeValidator(_parse_port)]


def _parse_port_range(value: object) -> object:
    """A rule port: `80` or `"8000-8080"`, kept as text for the message builder."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if match is None or not all(0 < int(p) <= 65535 for p in match.groups() if p):
        raise ValueError(f"port {value!r}: write 80 or 8000-8080")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if first > last:
        raise ValueError(f"port range {value!r} is backwards")
    return text


PortRangeText = Annotated[str, BeforeValidator(_parse_port_range)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Peer(_Strict):
    """One side of a rule. Every field given must match (AND); each list is an OR of its entries."""

    pods: list[PodName] = []  # shorthand for the pods' own addresses
    nets: list[Network] = []
    ipsets: list[ObjectName] = []
    ports: list[PortRangeText] = []
    not_pods: list[PodName] = []
    not_nets: list[Network] = []
    not_ipsets: list[ObjectName] = []
    not_ports: list[PortRangeText] = []

    def pod_names(self) -> list[str]:
        return [*self.pods, *self.not_pods]

    def ipset_names(self) -> list[str]:
        return [*self.ipsets, *self.not_ipsets]


class Rule(_Strict):
    action: Literal["allow", "deny", "pass", "log"]
    protocol: Literal["tcp", "udp", "icmp", "sctp"] | None = None
    not_protocol: Literal["tcp", "udp", "icmp", "sctp"] | None = None
    source: Peer = Peer()
    destination: Peer = Peer()

    @model_validator(mode="after")
    def _ports_need_protocol(self) -> Rule:
        # Calico's validation refuses numeric ports without a port protocol; the agent would
        # hold the policy back, which is not what a scenario author means.
        has_ports = any((self.source.ports, self.source.not_ports, self.destination.ports,
                         self.destination.not_ports))
        if has_ports and self.protocol not in PORT_PROTOCOLS:
            raise ValueError("ports need protocol: tcp, udp or sctp")
        return self


class Tier(_Strict):
    name: ObjectName
    order: float | None = None  # lower first; none sorts last, as in Calico
    default_action: Literal["Deny", "Pass"] = "Deny"


class Policy(_Strict):
    """A policy in a tier. `applies_to` names pods (or `all` pods) and host endpoints; a missing
    ingress or egress list means the policy does not apply in that direction, an empty list means
    it applies and matches nothing (the end of the tier decides)."""

    name: ObjectName
    tier: ObjectName = DEFAULT_TIER
    order: float | None = None
    applies_to: Literal["all"] | list[Annotated[str, Field(pattern=_OBJECT_NAME)]]
    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    apply_on_forward: bool = False  # host endpoints: also police traffic forwarded through them

    @model_validator(mode="after")
    def _some_direction(self) -> Policy:
        if self.ingress is None and self.egress is None:
            raise ValueError(f"policy {self.name}: give ingress, egress or both")
        return self


class Profile(_Strict):
    name: ObjectName
    ingress: list[Rule] = []
    egress: list[Rule] = []


class HostEndpoint(_Strict):
    name: ObjectName
    node: NodeName
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = "eth0"
    profiles: list[ObjectName] = []


class Pod(_Strict):
    name: PodName
    namespace: PodName = "default"
    ports: list[PortSpec] = []
    profiles: list[ObjectName] | None = None  # None: the scenario's pod_profiles


# The lab decides where BIRD's files live and runs it; a scenario sets only BGP behaviour.
LAB_OWNED_BGP_KEYS = frozenset({"enabled", "hostname", "config_path", "socket_path", "bird_binary",
                                "birdc_binary", "run_bird"})


def _bgp_section(value: dict[str, Any]) -> dict[str, Any]:
    from vppagent.bgp.config import BgpConfig

    owned = sorted(LAB_OWNED_BGP_KEYS & value.keys())
    if owned:
        raise ValueError(f"bgp: {', '.join(owned)} are set by the lab")
    try:
        BgpConfig.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"bgp.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    return value


BgpSection = Annotated[dict[str, Any], AfterValidator(_bgp_section)]


class Node(_Strict):
    name: NodeName
    pods: list[Pod] = []
    labels: dict[str, str] = {}  # sent in HostMetadataUpdate (route reflectors are chosen by label)
    bgp: BgpSection = {}  # this node's agent: merged over the scenario's bgp section


class Expectation(_Strict):
    """A written-down verdict; it must agree with the reference evaluator and with the wire."""

    source: PodName = Field(alias="from")
    target: PodName = Field(alias="to")
    port: PortSpec
    allowed: bool


class IPSetChange(_Strict):
    add: list[str] = []  # pod names or CIDRs
    remove: list[str] = []


class StepApply(_Strict):
    """Objects created or replaced (by name)."""

    tiers: list[Tier] = []
    ipsets: dict[ObjectName, list[str]] = {}
    profiles: list[Profile] = []
    policies: list[Policy] = []
    host_endpoints: list[HostEndpoint] = []


class StepChange(_Strict):
    ipsets: dict[ObjectName, IPSetChange] = {}


class StepRemove(_Strict):
    tiers: list[ObjectName] = []
    ipsets: list[ObjectName] = []
    profiles: list[ObjectName] = []
    policies: list[ObjectName] = []
    host_endpoints: list[ObjectName] = []


class Step(_Strict):
    name: str = Field(min_length=1, max_length=80)
    apply: StepApply = StepApply()
    change: StepChange = StepChange()
    remove: StepRemove = StepRemove()
    expect: list[Expectation] = []


@dataclass
class ClusterObjects:
    """The policy objects in force at one point of the scenario (what Felix's datastore holds)."""

    tiers: dict[str, Tier] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    host_endpoints: dict[str, HostEndpoint] = field(default_factory=dict)

    def copy(self) -> ClusterObjects:
        return ClusterObjects(dict(self.tiers), {k: list(v) for k, v in self.ipsets.items()},
                              dict(self.profiles), dict(self.policies), dict(self.host_endpoints))

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


class Scenario(_Strict):
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

    def node_block(self, node_name: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(self.pool.network_address) + (self.node_index(node_name) << 8),
                                      BLOCK_PREFIX))

    def pod_address(self, pod_name: str) -> ipaddress.IPv4Address:
        node = self.node_of(pod_name)
        position = next(i for i, pod in enumerate(node.pods) if pod.name == pod_name)
        return self.node_block(node.name).network_address + 2 + position

    def bgp_of(self, node: Node) -> dict[str, Any]:
        merged = {**self.bgp, **node.bgp}
        _bgp_section(merged)
        return merged

    def pod_profiles_of(self, pod: Pod) -> list[str]:
        return list(pod.profiles) if pod.profiles is not None else list(self.pod_profiles)

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
                            policies=self.policies, host_endpoints=self.host_endpoints)
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
        for exp in expectations:
            need("pod in expect", exp.source, pods)
            need("pod in expect", exp.target, pods)
            if exp.port not in self.pod(exp.target).ports:
                raise ValueError(f"{where}: expect {exp.source} -> {exp.target} {exp.port}: "
                                 f"{exp.target} does not listen on {exp.port}")


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


def load_scenario(path: Path | None = None) -> Scenario:
    """The scenario in `path`, or the bundled default; ScenarioError with a readable message."""
    if path is None:
        from importlib.resources import files

        text = files("vppagent.lab").joinpath("scenarios/default.yaml").read_text()
        where = "bundled default scenario"
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
