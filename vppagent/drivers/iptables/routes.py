"""Routes and interface sysctls for local workloads: `ip -json route show` to read, `ip -batch` to write.

Every route carries ROUTE_PROTOCOL; on every apply the routes with it are listed, the desired
ones kept and the rest deleted, in one `ip -force -batch` (a failing line is named on stderr and
the others still run, so one bad route fails only its owner). `ip` and not pyroute2: decoding a
dump of a node's links and routes in Python cost seconds at 2,000 workloads (every veth has an
IPv6 link-local route), and one netlink round trip per route another 0.75 ms each; `ip` filters
and writes in C. Interface indexes come from one streamed netlink dump (links.py). Sysctls are
Felix's per-interface settings for a workload veth (felix/dataplane/linux/endpoint_mgr.go
configureInterface), written when an interface first appears (or re-appears with a new index)
and on each refresh. Remote block routes come from
state/routes.py through render.py. All methods run on the runner's dataplane thread.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.iptables.links import link_indexes
from vppagent.drivers.iptables.runner import CommandError, Runner

log = logging.getLogger(__name__)

ROUTE_PROTOCOL = 81  # ours; not in iproute2's rt_protos list
_FAILED_LINE_RE = re.compile(r"^Command failed -:(\d+)$")


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


def workload_sysctls(iface: str, families: tuple[int, ...], spoofing: bool = False) -> list[tuple[str, str]]:
    """Felix's settings for a workload interface. rp_filter strict: the workload may not spoof;
    off (`spoofing`) when its endpoint may send from allowed prefixes not routed to it, which the
    kernel's check would drop: the raw table's rpf-skip and rpfilter rules then decide (chains.py),
    as in Felix. The kernel uses the larger of this and conf/all/rp_filter, so a host with
    all=1 still drops those sources (Felix has the same limit)."""
    out = [(f"net/ipv6/conf/{iface}/accept_ra", "0")]
    if 4 in families:
        out += [(f"net/ipv4/conf/{iface}/rp_filter", "0" if spoofing else "1"),
                (f"net/ipv4/conf/{iface}/route_localnet", "1"),
                (f"net/ipv4/conf/{iface}/proxy_arp", "1"), (f"net/ipv4/neigh/{iface}/proxy_delay", "0"),
                (f"net/ipv4/conf/{iface}/forwarding", "1")]
    if 6 in families:
        out += [(f"net/ipv6/conf/{iface}/proxy_ndp", "1"), (f"net/ipv6/conf/{iface}/forwarding", "1")]
    return out


class RouteManager:
    def __init__(self, runner: Runner, protocol: int = ROUTE_PROTOCOL) -> None:
        self.runner = runner
        self.protocol = protocol
        # iface -> (ifindex, spoofing) whose sysctls we wrote: a new index or a change of
        # `spoofing` writes them again.
        self._configured: dict[str, tuple[int, bool]] = {}

    def apply(self, routes: list[RouteSpec], ifaces: list[str], families: tuple[int, ...],
              force_sysctls: bool = False, spoofing: frozenset[str] = frozenset()) -> RouteResult:
        """`spoofing`: the interfaces of `ifaces` whose kernel rp_filter is off (workload_sysctls)."""
        result = RouteResult()
        links = self.runner.call(link_indexes)
        result.sysctls = self.runner.call(lambda: self._sysctls(ifaces, links, families, force_sysctls, spoofing))
        want = {r.dst: r for r in routes}
        lines: list[str] = []
        owners: list[tuple[str, str | None]] = []  # per line: (dst, owner; None for a delete)
        have: set[str] = set()
        for dst, entry in self._ours():
            spec = want.get(dst)
            if spec is not None and self._matches(entry, spec):
                have.add(dst)
                continue
            lines.append(self._delete_line(dst, entry))
            owners.append((dst, None))
        for dst, spec in sorted(want.items()):
            if dst in have:
                continue
            if spec.iface is not None and spec.iface not in links:
                result.failed[spec.owner or dst] = f"route {dst}: interface {spec.iface} does not exist"
                continue
            lines.append(self._replace_line(spec))
            owners.append((dst, spec.owner or dst))
        if not lines:
            return result
        try:
            out = self.runner.run(["ip", "-force", "-batch", "-"], stdin="\n".join(lines) + "\n", timeout=120,
                                  check=False)
            failed = _failed_lines(out.stderr)
            if out.returncode and not failed:
                failed = {n: out.stderr.strip() or f"ip exited {out.returncode}" for n in range(1, len(lines) + 1)}
        except CommandError as exc:
            failed = {n: str(exc) for n in range(1, len(lines) + 1)}
        for number, (dst, owner) in enumerate(owners, start=1):
            reason = failed.get(number)
            if reason is None:
                if owner is None:
                    result.removed += 1
                else:
                    result.added += 1
            elif owner is None:
                log.warning("cannot delete stale route %s: %s", dst, reason)
            else:
                result.failed[owner] = f"route {dst}: {reason}"
        return result

    def _sysctls(self, ifaces: list[str], links: dict[str, int], families: tuple[int, ...], force: bool,
                 spoofing: frozenset[str]) -> int:
        """Felix's settings for interfaces that are new (or have a new index, or changed whether
        they may spoof); all with `force`.
        os.open/os.write: thousands of small writes, where pathlib's text layer doubled the cost."""
        written = 0
        for iface in ifaces:
            index = links.get(iface)
            wanted = (index, iface in spoofing) if index is not None else None
            if wanted is None or (not force and self._configured.get(iface) == wanted):
                continue
            try:
                for key, value in workload_sysctls(iface, families, wanted[1]):
                    fd = os.open(f"/proc/sys/{key}", os.O_WRONLY)
                    try:
                        os.write(fd, value.encode())
                    finally:
                        os.close(fd)
                    written += 1
                self._configured[iface] = wanted
            except OSError as exc:
                log.warning("sysctls for %s: %s", iface, exc)
        for gone in set(self._configured) - set(ifaces):
            del self._configured[gone]
        return written

    def _ours(self) -> list[tuple[str, dict[str, Any]]]:
        """Our routes in the main table, both families: (canonical CIDR, ip's JSON entry)."""
        found = []
        for family in ("-4", "-6"):
            out = self.runner.run(["ip", "-json", family, "route", "show", "table", "main", "proto",
                                   str(self.protocol)], timeout=60).stdout
            for entry in json.loads(out or "[]"):
                dst = entry.get("dst")
                if not dst:
                    continue
                if dst == "default":
                    dst = "0.0.0.0/0" if family == "-4" else "::/0"
                try:
                    found.append((str(ipaddress.ip_network(dst, strict=False)), entry))
                except ValueError:
                    continue  # not an address (an unreachable route's type, say): not one of ours
        return found

    def _matches(self, entry: dict[str, Any], spec: RouteSpec) -> bool:
        if spec.iface is not None:
            return bool(entry.get("dev") == spec.iface and not entry.get("gateway"))
        return bool(entry.get("gateway") == spec.gateway)

    def _delete_line(self, dst: str, entry: dict[str, Any]) -> str:
        line = f"route del {dst}"
        if entry.get("gateway"):
            line += f" via {entry['gateway']}"
        if entry.get("dev"):
            line += f" dev {entry['dev']}"
        return f"{line} proto {self.protocol} table main"

    def _replace_line(self, spec: RouteSpec) -> str:
        if spec.iface is not None:
            scope = " scope link" if spec.family == 4 else ""
            return f"route replace {spec.dst} dev {spec.iface}{scope} proto {self.protocol} table main"
        return f"route replace {spec.dst} via {spec.gateway} proto {self.protocol} table main"

    def remove_all(self) -> RouteResult:
        return self.apply([], [], ())

    def close(self) -> None:
        """Nothing held open: every read and write is its own `ip` process."""


def _failed_lines(stderr: str) -> dict[int, str]:
    """`ip -force -batch` prints a command's error, then "Command failed -:N" (N from 1)."""
    failed: dict[int, str] = {}
    pending: list[str] = []
    for line in stderr.splitlines():
        found = _FAILED_LINE_RE.match(line.strip())
        if found:
            failed[int(found.group(1))] = " ".join(pending).strip() or "failed"
            pending = []
        elif line.strip():
            pending.append(line.strip())
    return failed
