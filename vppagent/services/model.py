"""Desired state of Kubernetes Services: service -> frontends -> ready backends (pure, no I/O).

Input is the Kubernetes API's own JSON (the dicts a list or watch returns for Services and
EndpointSlices), so the model reads exactly what the API server says and needs no client classes.
Output is `ServiceEntry` values keyed by "NAMESPACE/NAME", compared by value: `diff_services`
finds what a driver must (re)program, like every other kind of desired state in the agent.
`index.ServiceIndex` keeps them up to date object by object.

What counts, as kube-proxy reads it:
- ExternalName and headless (clusterIP "None") Services have no frontends: they are DNS only.
- Frontends: every cluster IP (`spec.clusterIPs`, else `spec.clusterIP`) on each port; NodePort and
  LoadBalancer Services also on each node address of a family the Service has, at `nodePort`;
  `spec.externalIPs` and `status.loadBalancer.ingress[].ip` on each port.
- Backends: endpoints of the EndpointSlices labelled `kubernetes.io/service-name` with the Service's
  name, in its namespace, whose `conditions.ready` is not false (unset means ready), the endpoint's
  first address, at the slice port whose name and protocol equal the Service port's.
- A frontend is served by backends of its own address family. With `externalTrafficPolicy: Local`
  the frontends reached from outside the cluster (node ports, external and load-balancer IPs) are
  served only by backends on this node; cluster IPs still use every ready backend.
- Session affinity "ClientIP" is carried with its timeout (default 10800 s, as the API defaults it).
A Service whose fields cannot be read gets an entry with `error` set and no frontends: nothing is
programmed for it (fail closed), and the error names the object.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["tcp", "udp", "sctp"]
FrontendKind = Literal["cluster", "nodeport", "external", "loadbalancer"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; the API server's default for ClientIP affinity
_PROTOCOLS: dict[str, Protocol] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_OUTSIDE_KINDS: frozenset[FrontendKind] = frozenset({"nodeport", "external", "loadbalancer"})


class ServiceFormatError(ValueError):
    """A Service or EndpointSlice field that cannot be read; the message names the object."""


def _address_text(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


@dataclass(frozen=True, order=True)
class Frontend:
    """One address:port/protocol that traffic to the service arrives at."""

    ip: str
    port: int
    protocol: Protocol
    kind: FrontendKind

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.ip).version

    def text(self) -> str:
        return f"{_address_text(self.ip)}:{self.port}/{self.protocol}"


@dataclass(frozen=True, order=True)
class Backend:
    """One ready endpoint address and the port it listens on; `node` is where it runs ("" unknown)."""

    ip: str
    port: int
    node: str = ""

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.ip).version

    def text(self) -> str:
        return f"{_address_text(self.ip)}:{self.port}"


@dataclass(frozen=True)
class ServicePortEntry:
    """One port of a service: where it is reached and which endpoints serve it."""

    name: str
    protocol: Protocol
    frontends: tuple[Frontend, ...]
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class ServiceEntry:
    """The desired state of one service; equal entries need no reprogramming."""

    name: str  # NAMESPACE/NAME
    ports: tuple[ServicePortEntry, ...] = ()
    affinity_timeout: int | None = None  # seconds when sessionAffinity is ClientIP, else None
    external_local: bool = False  # externalTrafficPolicy: Local
    node: str = ""  # this node's name, what `external_local` compares backends' nodes with
    error: str | None = None

    def frontends(self) -> list[Frontend]:
        return sorted({f for p in self.ports for f in p.frontends})

    def backends(self) -> list[Backend]:
        return sorted({b for p in self.ports for b in p.backends})

    def backends_for(self, port: ServicePortEntry, frontend: Frontend) -> tuple[Backend, ...]:
        """The backends a translation of `frontend` (one of `port`'s) may choose from."""
        local_only = self.external_local and frontend.kind in _OUTSIDE_KINDS
        return tuple(
            b for b in port.backends
            if b.family == frontend.family and (not local_only or b.node == self.node)
        )

    def report(self) -> dict[str, Any]:
        """The state report's shape (DESIGN §4)."""
        return {
            "name": self.name,
            "frontends": [f.text() for f in self.frontends()],
            "backends": [b.text() for b in self.backends()],
            "status": "error" if self.error else "up",
            "error": self.error,
        }


@dataclass(frozen=True)
class _ServicePort:
    name: str
    protocol: Protocol
    port: int
    node_port: int | None


@dataclass(frozen=True)
class ServiceSpec:
    """What the model needs of one Service object."""

    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    ports: tuple[_ServicePort, ...]
    node_ports_open: bool  # type NodePort or LoadBalancer
    external_ips: tuple[str, ...]
    lb_ips: tuple[str, ...]
    affinity_timeout: int | None
    external_local: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SlicePort:
    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True)
class SliceEndpoint:
    ip: str
    ready: bool
    node: str


@dataclass(frozen=True)
class EndpointSliceSpec:
    """What the model needs of one EndpointSlice object."""

    namespace: str
    name: str
    service: str  # the kubernetes.io/service-name label ("" when absent)
    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def object_key(obj: Mapping[str, Any]) -> str:
    """NAMESPACE/NAME of an API object (for errors and store keys); '?' for what is missing."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace') or '?'}/{meta.get('name') or '?'}"


def slice_owner(obj: Mapping[str, Any]) -> str:
    """NAMESPACE/SERVICE an EndpointSlice's JSON belongs to (its kubernetes.io/service-name label)."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    labels = meta.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    return f"{meta.get('namespace') or ''}/{labels.get(SERVICE_NAME_LABEL) or ''}"


def _ip(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise ServiceFormatError(f"{what} {value!r} is not an IP address") from None


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ServiceFormatError(f"{what} {value!r} is not a port number")
    return value


def _protocol(value: Any, what: str) -> Protocol:
    proto = _PROTOCOLS.get("TCP" if value is None else value)
    if proto is None:
        raise ServiceFormatError(f"{what} protocol {value!r} is not TCP, UDP or SCTP")
    return proto


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ServiceFormatError(f"{what} is not a list")
    return value


def _dict(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ServiceFormatError(f"{what} is not a mapping")
    return value


def parse_service(obj: Mapping[str, Any]) -> ServiceSpec | None:
    """A Service's JSON as the model reads it; None for ExternalName and headless Services."""
    where = f"service {object_key(obj)}"
    try:
        meta = _dict(obj.get("metadata"), "metadata")
        spec = _dict(obj.get("spec"), "spec")
        status = _dict(obj.get("status"), "status")
        kind = spec.get("type") or "ClusterIP"
        if kind == "ExternalName":
            return None
        ips = _list(spec.get("clusterIPs"), "spec.clusterIPs") or (
            [spec["clusterIP"]] if spec.get("clusterIP") else []
        )
        if not ips or ips[0] == "None":
            return None
        ports = []
        for i, p in enumerate(_list(spec.get("ports"), "spec.ports")):
            p = _dict(p, f"spec.ports[{i}]")
            node_port = p.get("nodePort")
            ports.append(_ServicePort(
                name=str(p.get("name") or ""),
                protocol=_protocol(p.get("protocol"), f"spec.ports[{i}]"),
                port=_port(p.get("port"), f"spec.ports[{i}].port"),
                node_port=None if node_port in (None, 0) else _port(node_port, f"spec.ports[{i}].nodePort"),
            ))
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            config = _dict(_dict(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig").get("clientIP"),
                           "spec.sessionAffinityConfig.clientIP")
            timeout = config.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
                raise ServiceFormatError(f"session affinity timeout {timeout!r} is not a positive integer")
            affinity = timeout
        ingress = _list(_dict(status.get("loadBalancer"), "status.loadBalancer").get("ingress"),
                        "status.loadBalancer.ingress")
        return ServiceSpec(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            cluster_ips=tuple(_ip(ip, "cluster IP") for ip in ips),
            ports=tuple(ports),
            node_ports_open=kind in ("NodePort", "LoadBalancer"),
            external_ips=tuple(_ip(ip, "external IP") for ip in _list(spec.get("externalIPs"), "spec.externalIPs")),
            lb_ips=tuple(_ip(i["ip"], "load-balancer IP") for i in ingress if isinstance(i, Mapping) and i.get("ip")),
            affinity_timeout=affinity,
            external_local=spec.get("externalTrafficPolicy") == "Local" and kind in ("NodePort", "LoadBalancer"),
        )
    except ServiceFormatError as exc:
        raise ServiceFormatError(f"{where}: {exc}") from None


def parse_endpoint_slice(obj: Mapping[str, Any]) -> EndpointSliceSpec | None:
    """An EndpointSlice's JSON as the model reads it; None for FQDN slices (no addresses to use)."""
    where = f"endpointslice {object_key(obj)}"
    try:
        meta = _dict(obj.get("metadata"), "metadata")
        if obj.get("addressType") not in ("IPv4", "IPv6"):
            return None
        labels = _dict(meta.get("labels"), "metadata.labels")
        ports = []
        for i, p in enumerate(_list(obj.get("ports"), "ports")):
            p = _dict(p, f"ports[{i}]")
            if p.get("port") is None:  # a slice port without a number: "all ports", unused by Services
                continue
            ports.append(SlicePort(str(p.get("name") or ""), _protocol(p.get("protocol"), f"ports[{i}]"),
                                   _port(p.get("port"), f"ports[{i}].port")))
        endpoints = []
        for i, e in enumerate(_list(obj.get("endpoints"), "endpoints")):
            e = _dict(e, f"endpoints[{i}]")
            addresses = _list(e.get("addresses"), f"endpoints[{i}].addresses")
            if not addresses:
                continue
            ready = _dict(e.get("conditions"), f"endpoints[{i}].conditions").get("ready")
            endpoints.append(SliceEndpoint(_ip(addresses[0], f"endpoints[{i}] address"), ready is not False,
                                           str(e.get("nodeName") or "")))
        return EndpointSliceSpec(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            service=str(labels.get(SERVICE_NAME_LABEL) or ""),
            ports=tuple(ports),
            endpoints=tuple(endpoints),
        )
    except ServiceFormatError as exc:
        raise ServiceFormatError(f"{where}: {exc}") from None


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def service_entry(
    service: ServiceSpec, slices: Iterable[EndpointSliceSpec], node_addresses: Iterable[str] = (), node: str = ""
) -> ServiceEntry:
    """The desired state of `service` given the EndpointSlices (any; those of other services are ignored)."""
    own = [s for s in slices if s.namespace == service.namespace and s.service == service.name]
    families = {_family(ip) for ip in service.cluster_ips}
    node_ips = sorted({str(ipaddress.ip_address(a)) for a in node_addresses})
    ports = []
    for sp in service.ports:
        frontends = {Frontend(ip, sp.port, sp.protocol, "cluster") for ip in service.cluster_ips}
        if service.node_ports_open and sp.node_port is not None:
            frontends |= {Frontend(ip, sp.node_port, sp.protocol, "nodeport") for ip in node_ips
                          if _family(ip) in families}
        frontends |= {Frontend(ip, sp.port, sp.protocol, "external") for ip in service.external_ips}
        frontends |= {Frontend(ip, sp.port, sp.protocol, "loadbalancer") for ip in service.lb_ips}
        backends = {
            Backend(e.ip, slice_port.port, e.node)
            for s in own
            for slice_port in s.ports
            if slice_port.name == sp.name and slice_port.protocol == sp.protocol
            for e in s.endpoints
            if e.ready
        }
        ports.append(ServicePortEntry(sp.name, sp.protocol, tuple(sorted(frontends)), tuple(sorted(backends))))
    return ServiceEntry(
        name=service.key,
        ports=tuple(ports),
        affinity_timeout=service.affinity_timeout,
        external_local=service.external_local,
        node=node if service.external_local else "",
    )


@dataclass(frozen=True)
class ServicesDiff:
    """Entries to create or replace (`upserts`) and names to remove (`removes`)."""

    upserts: dict[str, ServiceEntry]
    removes: frozenset[str]

    def is_empty(self) -> bool:
        return not self.upserts and not self.removes


def diff_services(old: Mapping[str, ServiceEntry], new: Mapping[str, ServiceEntry]) -> ServicesDiff:
    """What turns `old` into `new`: changed or new entries, and names no longer present."""
    return ServicesDiff(
        upserts={k: v for k, v in new.items() if old.get(k) != v},
        removes=frozenset(old.keys() - new.keys()),
    )
