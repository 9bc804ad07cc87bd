"""A validated pod attachment request, parsed from Calico's CNI `AddRequest`/`DelRequest`.

Everything that will reach the kernel (interface names, netns paths, addresses) is checked here,
so a hostile or malformed request fails with a message naming the field, before any change.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from vppagent.gen.cni import cni_pb2
from vppagent.state.model import WorkloadKey

# Linux interface names: at most 15 bytes; we also refuse '/', whitespace, ':' and the like.
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NETNS_ROOTS = ("/var/run/netns/", "/run/netns/", "/proc/")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class PodSpecError(ValueError):
    """A CNI request that cannot be honoured; the message names the field."""


@dataclass(frozen=True)
class PodSpec:
    workload: WorkloadKey
    netns: Path
    container_ifname: str
    host_ifname: str
    addresses: tuple[IPInterface, ...]
    routes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    mtu: int = 0
    allow_ip_forwarding: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ipv4(self) -> list[ipaddress.IPv4Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv4Interface)]

    @property
    def ipv6(self) -> list[ipaddress.IPv6Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv6Interface)]


def _ifname(value: str, what: str) -> str:
    if not IFNAME.match(value):
        raise PodSpecError(f"{what} {value!r} is not a valid interface name (1-15 of [A-Za-z0-9_.-])")
    return value


def _netns(value: str) -> Path:
    path = Path(value)
    if not value or not path.is_absolute() or ".." in path.parts or not value.startswith(NETNS_ROOTS):
        raise PodSpecError(f"netns {value!r} must be an absolute path under /var/run/netns, /run/netns or /proc")
    if not path.exists():
        raise PodSpecError(f"netns {value!r} does not exist")
    return path


def host_ifname_for(workload: WorkloadKey) -> str:
    """Calico's rule when the CNI plugin gives no name: 'cali' + 11 hex digits of a hash."""
    import hashlib

    digest = hashlib.sha1(f"{workload.workload_id}.{workload.endpoint_id}".encode()).hexdigest()
    return f"cali{digest[:11]}"


def parse_add(req: cni_pb2.AddRequest) -> PodSpec:
    wl = req.workload
    if not wl.name and not wl.pod:
        raise PodSpecError("workload.name (or workload.pod) is required")
    workload_id = f"{wl.namespace}/{wl.pod or wl.name}" if wl.namespace else (wl.pod or wl.name)
    key = WorkloadKey(wl.orchestrator or "k8s", workload_id, wl.endpoint or "eth0")
    addresses: list[IPInterface] = []
    for ip in req.container_ips:
        try:
            addresses.append(ipaddress.ip_interface(ip.address))
        except ValueError:
            raise PodSpecError(f"container_ips: {ip.address!r} is not an address/prefix") from None
    if not addresses:
        raise PodSpecError("container_ips: at least one address is required")
    routes = []
    for text in req.container_routes:
        try:
            routes.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise PodSpecError(f"container_routes: {text!r} is not a CIDR") from None
    host = req.desired_host_interface_name or host_ifname_for(key)
    mtu = req.settings.mtu
    if mtu and not 68 <= mtu <= 65535:
        raise PodSpecError(f"settings.mtu {mtu} is out of range 68-65535")
    return PodSpec(
        workload=key, netns=_netns(req.netns), container_ifname=_ifname(req.interface_name or "eth0", "interface_name"),
        host_ifname=_ifname(host, "desired_host_interface_name"), addresses=tuple(addresses), routes=tuple(routes),
        mtu=mtu, allow_ip_forwarding=req.settings.allow_ip_forwarding, labels=dict(wl.labels),
    )


@dataclass(frozen=True)
class PodDelete:
    netns: str
    container_ifname: str


def parse_del(req: cni_pb2.DelRequest) -> PodDelete:
    # The netns may already be gone on delete (the runtime tears it down first): don't require it.
    if req.netns and not req.netns.startswith(NETNS_ROOTS):
        raise PodSpecError(f"netns {req.netns!r} must be under /var/run/netns, /run/netns or /proc")
    return PodDelete(req.netns, _ifname(req.interface_name or "eth0", "interface_name"))
