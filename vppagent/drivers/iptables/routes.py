"""Routes and interface sysctls for local workloads, over netlink (pyroute2).

Every route carries ROUTE_PROTOCOL; at start and on refresh the routes with it are listed, the
desired ones kept and the rest deleted. Sysctls are Felix's per-interface settings for a workload
veth (felix/dataplane/linux/endpoint_mgr.go configureInterface), written when an interface first
appears (or re-appears with a new index) and on each refresh. Remote block routes come from
state/routes.py through render.py. All methods run on the runner's dataplane thread.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vppagent.drivers.iptables.runner import Runner

log = logging.getLogger(__name__)

ROUTE_PROTOCOL = 81  # ours; not in iproute2's rt_protos list
MAIN_TABLE = 254
SCOPE_LINK = 253


@dataclass(frozen=True)
class RouteSpec:
    """A route we want: to a local interface, or via a gateway (remote block without BGP)."""

    dst: str  # canonical CIDR
    iface: str | None = None
    gateway: str | None = None
    owner: str = ""

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst else 4


@dataclass
class RouteResult:
    added: int = 0
    removed: int = 0
    sysctls: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # owner -> why


def workload_sysctls(iface: str, families: tuple[int, ...]) -> list[tuple[str, str]]:
    """Felix's settings for a workload interface (rp_filter strict: the workload may not spoof)."""
    out = [(f"net/ipv6/conf/{iface}/accept_ra", "0")]
    if 4 in families:
        out += [(f"net/ipv4/conf/{iface}/rp_filter", "1"), (f"net/ipv4/conf/{iface}/route_localnet", "1"),
                (f"net/ipv4/conf/{iface}/proxy_arp", "1"), (f"net/ipv4/neigh/{iface}/proxy_delay", "0"),
                (f"net/ipv4/conf/{iface}/forwarding", "1")]
    if 6 in families:
        out += [(f"net/ipv6/conf/{iface}/proxy_ndp", "1"), (f"net/ipv6/conf/{iface}/forwarding", "1")]
    return out


class RouteManager:
    def __init__(self, runner: Runner, protocol: int = ROUTE_PROTOCOL) -> None:
        self.runner = runner
        self.protocol = protocol
        self._ipr: Any = None
        self._configured: dict[str, int] = {}  # iface -> ifindex whose sysctls we wrote

    def _iproute(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()  # created on the dataplane thread: bound to its namespace
        return self._ipr

    def apply(self, routes: list[RouteSpec], ifaces: list[str], families: tuple[int, ...],
              force_sysctls: bool = False) -> RouteResult:
        return self.runner.call(lambda: self._apply(routes, ifaces, families, force_sysctls))

    def _links(self) -> dict[str, int]:
        return {link.get_attr("IFLA_IFNAME"): link["index"] for link in self._iproute().get_links()}

    def _ours(self) -> list[Any]:
        ipr = self._iproute()
        found = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            found += [r for r in ipr.route("dump", family=fam, proto=self.protocol)
                      if r.get_attr("RTA_TABLE") in (None, MAIN_TABLE)]
        return found

    def _apply(self, routes: list[RouteSpec], ifaces: list[str], families: tuple[int, ...],
               force_sysctls: bool) -> RouteResult:
        result = RouteResult()
        ipr = self._iproute()
        links = self._links()
        for iface in ifaces:
            index = links.get(iface)
            if index is None or (not force_sysctls and self._configured.get(iface) == index):
                continue
            try:
                for key, value in workload_sysctls(iface, families):
                    Path("/proc/sys", key).write_text(value)
                    result.sysctls += 1
                self._configured[iface] = index
            except OSError as exc:
                log.warning("sysctls for %s: %s", iface, exc)
        for gone in set(self._configured) - set(ifaces):
            del self._configured[gone]
        want = {r.dst: r for r in routes}
        have: dict[str, Any] = {}
        for msg in self._ours():
            dst = f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}" if msg.get_attr("RTA_DST") else None
            if dst is None:
                continue
            spec = want.get(str(ipaddress.ip_network(dst, strict=False)))
            if spec is not None and self._matches(msg, spec, links):
                have[spec.dst] = msg
                continue
            try:
                ipr.route("del", **self._identity(msg))
                result.removed += 1
            except Exception as exc:  # netlink errors are reported, not raised
                log.warning("cannot delete stale route %s: %s", dst, exc)
        for dst, spec in sorted(want.items()):
            if dst in have:
                continue
            try:
                ipr.route("replace", **self._attrs(spec, links))
                result.added += 1
            except Exception as exc:
                result.failed[spec.owner or dst] = f"route {dst}: {exc}"
        return result

    def _matches(self, msg: Any, spec: RouteSpec, links: dict[str, int]) -> bool:
        if spec.iface is not None:
            return bool(msg.get_attr("RTA_OIF") == links.get(spec.iface) and not msg.get_attr("RTA_GATEWAY"))
        return bool(msg.get_attr("RTA_GATEWAY") == spec.gateway)

    def _identity(self, msg: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {"dst": f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}", "family": msg["family"],
                                 "proto": msg["proto"], "scope": msg["scope"], "table": MAIN_TABLE}
        if msg.get_attr("RTA_OIF") is not None:
            attrs["oif"] = msg.get_attr("RTA_OIF")
        if msg.get_attr("RTA_GATEWAY") is not None:
            attrs["gateway"] = msg.get_attr("RTA_GATEWAY")
        return attrs

    def _attrs(self, spec: RouteSpec, links: dict[str, int]) -> dict[str, Any]:
        family = socket.AF_INET6 if spec.family == 6 else socket.AF_INET
        attrs: dict[str, Any] = {"dst": spec.dst, "family": family, "proto": self.protocol, "table": MAIN_TABLE}
        if spec.iface is not None:
            index = links.get(spec.iface)
            if index is None:
                raise LookupError(f"interface {spec.iface} does not exist")
            attrs["oif"] = index
            if spec.family == 4:
                attrs["scope"] = SCOPE_LINK
        else:
            attrs["gateway"] = spec.gateway
        return attrs

    def remove_all(self) -> RouteResult:
        return self.apply([], [], ())

    def close(self) -> None:
        if self._ipr is not None:
            ipr, self._ipr = self._ipr, None
            self.runner.call(ipr.close)
