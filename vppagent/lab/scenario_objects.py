"""What a lab scenario's YAML may say: the pydantic models of its objects and steps.

Each model refuses what the agent would hold back or the lab cannot build, with a message naming
the field (pydantic adds the path). How the objects combine into a cluster, step by step, and the
checks across objects are in scenario.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

DEFAULT_TIER = "default"
PORT_PROTOCOLS = ("tcp", "udp", "sctp")

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_OBJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
PodName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=40)]
# Node names become namespace names (prefix + name) and BGP hostnames.
NodeName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=24)]
ObjectName = Annotated[str, Field(pattern=_OBJECT_NAME, max_length=100)]



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


# Every scenario model: unknown keys are errors (a typo must not pass silently), values frozen.
STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Strict(BaseModel):
    model_config = STRICT


class Peer(Strict):
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


class Rule(Strict):
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


class Tier(Strict):
    name: ObjectName
    order: float | None = None  # lower first; none sorts last, as in Calico
    default_action: Literal["Deny", "Pass"] = "Deny"


class Policy(Strict):
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


class Profile(Strict):
    name: ObjectName
    ingress: list[Rule] = []
    egress: list[Rule] = []


class HostEndpoint(Strict):
    name: ObjectName
    node: NodeName
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = "eth0"
    profiles: list[ObjectName] = []


class Pod(Strict):
    name: PodName
    namespace: PodName = "default"
    ports: list[PortSpec] = []
    profiles: list[ObjectName] | None = None  # None: the scenario's pod_profiles


# The lab decides where BIRD's files live and runs it; a scenario sets only BGP behaviour.
LAB_OWNED_BGP_KEYS = frozenset({"enabled", "hostname", "config_path", "socket_path", "bird_binary",
                                "birdc_binary", "run_bird"})


def bgp_section(value: dict[str, Any]) -> dict[str, Any]:
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


BgpSection = Annotated[dict[str, Any], AfterValidator(bgp_section)]


class Node(Strict):
    name: NodeName
    pods: list[Pod] = []
    labels: dict[str, str] = {}  # sent in HostMetadataUpdate (route reflectors are chosen by label)
    bgp: BgpSection = {}  # this node's agent: merged over the scenario's bgp section


class Expectation(Strict):
    """A written-down verdict; it must agree with the reference evaluator and with the wire."""

    source: PodName = Field(alias="from")
    target: PodName = Field(alias="to")
    port: PortSpec
    allowed: bool


SERVICE_PROTOCOLS = ("tcp", "udp")  # what the lab's listeners answer on
NODE_PORTS = range(30000, 32768)  # Kubernetes' default service-node-port-range


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class ServicePort(Strict):
    """A Service port; Kubernetes' spellings (`targetPort`, `nodePort`) are accepted too."""

    name: Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", max_length=15)] = ""
    protocol: Annotated[Literal["tcp", "udp"], BeforeValidator(_lower)] = "tcp"
    port: Annotated[int, Field(ge=1, le=65535)]
    target_port: Annotated[int | None, Field(ge=1, le=65535, alias="targetPort")] = None  # None: `port`
    node_port: Annotated[int | None, Field(alias="nodePort")] = None  # NodePort Services: required

    @property
    def target(self) -> Port:
        """Where the backends listen."""
        return Port(self.protocol, self.target_port or self.port)

    def label(self) -> str:
        return self.name or f"{self.protocol}/{self.port}"


class Service(Strict):
    """A Kubernetes Service with explicit backends (pods of the scenario, by name) instead of a
    selector: the lab publishes it and one EndpointSlice of its ready backends. IPv4 only, like
    the lab, so one cluster IP."""

    name: PodName
    namespace: PodName = "default"
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    cluster_ip: ipaddress.IPv4Address = Field(alias="clusterIP")
    ports: list[ServicePort] = Field(min_length=1, max_length=20)
    backends: list[PodName] = []
    external_traffic_policy: Literal["Cluster", "Local"] = Field("Cluster", alias="externalTrafficPolicy")
    session_affinity: Literal["None", "ClientIP"] = Field("None", alias="sessionAffinity")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @model_validator(mode="after")
    def _check(self) -> Service:
        where = f"service {self.key}"
        if len(self.ports) > 1 and not all(p.name for p in self.ports):
            raise ValueError(f"{where}: every port needs a name when there are several (as in Kubernetes)")
        names = [p.name for p in self.ports if p.name]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: two ports share a name")
        if len({(p.protocol, p.port) for p in self.ports}) != len(self.ports):
            raise ValueError(f"{where}: two ports share a protocol and port")
        for p in self.ports:
            if self.type == "NodePort" and p.node_port not in NODE_PORTS:
                raise ValueError(f"{where}: port {p.label()}: a NodePort Service needs node_port "
                                 f"{NODE_PORTS.start}-{NODE_PORTS.stop - 1} (the lab allocates none)")
            if self.type != "NodePort" and p.node_port is not None:
                raise ValueError(f"{where}: port {p.label()}: node_port needs type NodePort")
        if self.external_traffic_policy == "Local" and self.type != "NodePort":
            raise ValueError(f"{where}: external_traffic_policy Local needs type NodePort")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"{where}: a backend is listed twice")
        return self


def service_key(reference: str) -> str:
    """`web` means default/web; `ns/web` names the namespace."""
    return reference if "/" in reference else f"default/{reference}"


ServiceRef = Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class BackendChange(Strict):
    add: list[PodName] = []
    remove: list[PodName] = []


class IPSetChange(Strict):
    add: list[str] = []  # pod names or CIDRs
    remove: list[str] = []


class StepApply(Strict):
    """Objects created or replaced (by name)."""

    tiers: list[Tier] = []
    ipsets: dict[ObjectName, list[str]] = {}
    profiles: list[Profile] = []
    policies: list[Policy] = []
    host_endpoints: list[HostEndpoint] = []
    services: list[Service] = []


class StepChange(Strict):
    ipsets: dict[ObjectName, IPSetChange] = {}
    services: dict[ServiceRef, BackendChange] = {}  # backends added to or removed from a Service


class StepRemove(Strict):
    tiers: list[ObjectName] = []
    ipsets: list[ObjectName] = []
    profiles: list[ObjectName] = []
    policies: list[ObjectName] = []
    host_endpoints: list[ObjectName] = []
    services: list[ServiceRef] = []


class Step(Strict):
    name: str = Field(min_length=1, max_length=80)
    apply: StepApply = StepApply()
    change: StepChange = StepChange()
    remove: StepRemove = StepRemove()
    expect: list[Expectation] = []
